"""Two methods' test mAP seed by seed, pooled over bench sections: the paired lead and whether it clears the spread.

    python bench/paired.py --bits 16 32 --finetuned --a "NSH torchsort, own view + 2 mined" \
        --b "NT-Xent on codes, tau 0.3" --sections fashion_mnist_64px_finetuned_16 fashion_mnist_64px_finetuned_swept_baseline \
        fashion_mnist_64px_finetuned_seeds34

More seeds of a comparison are run as a new section (`bench/quality.py --seeds 3 4 --tag ..._seeds34`), so that the
first sections' records stay as they were written; this pools them. A method is named by the start of its row name,
which must match one method per section. A seed scored twice must have scored the same (a rerun reuses the run).
With --pick, --a and --b name families instead ("NSH", "NT-Xent"), and each side is the method that validation picks
at each code length over the pooled seeds (the highest mean best_val_map), as the bench's model selection does:

    python bench/paired.py --pick --bits 16 32 64 --a NSH --b NT-Xent --sections cifar10_160px_lite2 \
        cifar10_160px_lite2_seeds34
"Clears the spread" is the bar of issue 5: the mean lead above both methods' sample std over seeds. --metric compares
another of the rows' test scores (the pick stays on validation mAP), e.g. pr_area, the area under the whole database's
P-R curve, which rows hold from session 39 on.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.quality import FINETUNED, RESULTS, TEST_SCORES  # noqa: E402


def _rows(sections: list[str], prefix: str, finetuned: bool, folder: Path | None,
          seeds: list[int] | None = None) -> list[tuple[str, dict]]:
    """(section tag, row) for every row whose method starts with prefix (and, given seeds, of those seeds), in the
    sections' order."""
    out = []
    for tag in sections:
        path = (RESULTS if folder is None else folder) / f"{tag}.json"
        if not path.is_file():
            raise SystemExit(f"no section {tag}: {path} does not exist (bench/quality.py --tag {tag} writes it)")
        out += [(tag, r) for r in json.loads(path.read_text())["rows"]
                if r["method"].startswith(prefix) and r["method"].endswith(FINETUNED) == finetuned
                and (seeds is None or r["seed"] in seeds)]
    return out


def _put(got: dict, key: tuple[int, int], value: float, name: str, tag: str) -> None:
    if key in got and abs(got[key] - value) > 1e-9:
        raise SystemExit(f"{name!r} at {key[0]} bits, seed {key[1]} scored {got[key]:.4f} and "
                         f"{value:.4f} in different sections ({tag} the second): pool sections of one setting")
    got[key] = value


def scores(sections: list[str], prefix: str, finetuned: bool, folder: Path | None = None,
           seeds: list[int] | None = None, metric: str = "map") -> dict[tuple[int, int], float]:
    """(bits, seed) -> test score (mAP unless metric names another) of the one method per section whose row name
    starts with prefix; rows without that score are left out."""
    got: dict[tuple[int, int], float] = {}
    rows = _rows(sections, prefix, finetuned, folder, seeds)
    for tag in sections:
        names = sorted({r["method"] for t, r in rows if t == tag})
        if len(names) > 1:
            raise SystemExit(f"{prefix!r} matches {len(names)} methods in {tag}: {names}; give more of the name")
    for tag, r in rows:
        if metric in r:
            _put(got, (r["bits"], r["seed"]), r[metric], prefix, tag)
    return got


def ranked(sections: list[str], prefix: str, finetuned: bool, bits: int, folder: Path | None = None,
           seeds: list[int] | None = None, metric: str = "map") -> list[dict]:
    """The methods whose name starts with prefix at one code length, best mean validation mAP first.

    Each: {"method", "val": mean best_val_map, "val_seeds": how many, "scores": (bits, seed) -> test score (metric;
    seeds without it left out)}. Only the methods scored on as many seeds as the best-covered one compete: a
    validation mean over fewer seeds is not the same measure.
    With seeds, only those seeds count (a screen run on fewer seeds than the forms it is ranked against).
    """
    val: dict[str, dict] = {}
    test: dict[str, dict] = {}
    for tag, r in _rows(sections, prefix, finetuned, folder, seeds):
        if r["bits"] == bits and "best_val_map" in r:
            key = (bits, r["seed"])
            _put(val.setdefault(r["method"], {}), key, r["best_val_map"], r["method"], tag)
            test.setdefault(r["method"], {})
            if metric in r:
                _put(test[r["method"]], key, r[metric], r["method"], tag)
    if not val:
        raise SystemExit(f"no method starting with {prefix!r} has validation scores at {bits} bits in {sections}")
    most = max(map(len, val.values()))
    out = [{"method": m, "val": statistics.mean(v.values()), "val_seeds": len(v), "scores": test[m]}
           for m, v in val.items() if len(v) == most]
    return sorted(out, key=lambda c: -c["val"])


def features(sections: list[str], name: str, finetuned: bool, folder: Path | None = None,
             exact: bool = False) -> dict[tuple[int, int], str]:
    """(bits, seed) -> the digest of the features the method's run trained on, for rows that record one (sections
    from session 43 on). With exact, the method named whole (a --pick), else every method starting with name."""
    got: dict[tuple[int, int], str] = {}
    for tag, r in _rows(sections, name, finetuned, folder):
        if r.get("features") and (not exact or r["method"] == name):
            key = (r["bits"], r["seed"])
            if got.setdefault(key, r["features"]) != r["features"]:
                raise SystemExit(f"{r['method']!r} at {key[0]} bits, seed {key[1]} was trained on two builds of the "
                                 f"feature cache ({got[key]}, then {r['features']} in {tag}): pool sections of one build")
    return got


def like_for_like(a: dict[tuple[int, int], str], b: dict[tuple[int, int], str], bits: int) -> None:
    """Refuse a pair of runs trained on two builds of the feature cache: a rebuild re-rolls runs by up to 0.006
    (sessions 36, 42), about the leads measured, so such a pair compares the builds as much as the methods."""
    mixed = {s: (a[n, s], b[n, s]) for (n, s) in a if n == bits and (n, s) in b and a[n, s] != b[n, s]}
    if mixed:
        raise SystemExit(f"{bits} bits: the two methods trained on different features at seed(s) "
                         f"{', '.join(f'{s} ({x} against {y})' for s, (x, y) in sorted(mixed.items()))}: pair "
                         "sections scored on one build of the feature cache (the digests under each section in "
                         "docs/results.md)")


def compare(a: dict[tuple[int, int], float], b: dict[tuple[int, int], float], bits: int) -> dict:
    """The paired comparison at one code length over the seeds both methods have (at least two)."""
    seeds = sorted(s for (n, s) in a if n == bits and (n, s) in b)
    if len(seeds) < 2:
        raise SystemExit(f"{bits} bits: both methods scored on {len(seeds)} seed(s); a spread needs two (a score "
                         "that older rows lack, such as pr_area, counts only the seeds that have it)")
    xa, xb = [a[bits, s] for s in seeds], [b[bits, s] for s in seeds]
    lead = [p - q for p, q in zip(xa, xb)]
    std_a, std_b, mean_lead = statistics.stdev(xa), statistics.stdev(xb), statistics.mean(lead)
    return {"bits": bits, "seeds": seeds, "a": xa, "b": xb, "lead": lead,
            "mean_a": statistics.mean(xa), "std_a": std_a, "mean_b": statistics.mean(xb), "std_b": std_b,
            "mean_lead": mean_lead, "std_lead": statistics.stdev(lead), "clears_spread": mean_lead > max(std_a, std_b)}


def _per_seed(xs: list[float], sign: str = "") -> str:
    return " / ".join(f"{x:{sign}.3f}" for x in xs)


def table(results: list[dict]) -> list[str]:
    lines = ["| bits | seeds | a, per seed | b, per seed | lead, per seed | a | b | mean lead | clears the spread |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in results:
        lines.append(f"| {c['bits']} | {', '.join(map(str, c['seeds']))} | {_per_seed(c['a'])} | {_per_seed(c['b'])} | "
                     f"{_per_seed(c['lead'], '+')} | {c['mean_a']:.3f} ± {c['std_a']:.3f} | {c['mean_b']:.3f} ± {c['std_b']:.3f} | "
                     f"{c['mean_lead']:+.3f} ± {c['std_lead']:.3f} | {'yes' if c['clears_spread'] else 'no'} |")
    return lines


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", required=True, help="the start of the first method's row name (the one expected to lead)")
    p.add_argument("--b", required=True, help="the start of the second method's row name")
    p.add_argument("--sections", nargs="+", required=True, help="tags of docs/results/<tag>.json to pool")
    p.add_argument("--bits", nargs="+", type=int, required=True)
    p.add_argument("--finetuned", action="store_true", help="the rows ending ', then fine-tuned' (else the others)")
    p.add_argument("--seeds", nargs="+", type=int, help="only these seeds (default: every seed both sides have)")
    p.add_argument("--metric", choices=TEST_SCORES, default="map", help="the test score to compare (default: mAP@k)")
    p.add_argument("--pick", action="store_true", help="--a and --b start families of methods; compare the ones that "
                                                       "validation picks at each code length")
    args = p.parse_args(argv)
    if not args.pick:
        a, b = (scores(args.sections, name, args.finetuned, seeds=args.seeds, metric=args.metric)
                for name in (args.a, args.b))
        fa, fb = (features(args.sections, name, args.finetuned) for name in (args.a, args.b))
        for n in args.bits:
            like_for_like(fa, fb, n)
        results = [compare(a, b, n) for n in args.bits]
        print(f"a: {args.a}\nb: {args.b}\n" + "\n".join(table(results)))
        return results
    results = []
    for n in args.bits:
        picks = []
        for side, prefix in (("a", args.a), ("b", args.b)):
            ranking = ranked(args.sections, prefix, args.finetuned, n, seeds=args.seeds, metric=args.metric)
            print(f"{n} bits, {side} ({prefix}...), by mean validation mAP over {ranking[0]['val_seeds']} seeds:")
            for c in ranking:
                test = list(c["scores"].values())
                spread = statistics.stdev(test) if len(test) > 1 else 0.0
                got = f"{statistics.mean(test):.4f} ± {spread:.4f}" if test else "none"
                print(f"  val {c['val']:.4f}  test {args.metric} {got} ({len(test)} seeds)  {c['method']}")
            picks.append(ranking[0])
        like_for_like(*(features(args.sections, c["method"], args.finetuned, exact=True) for c in picks), n)
        results.append(compare(picks[0]["scores"], picks[1]["scores"], n))
    print("\n".join(table(results)))
    return results


if __name__ == "__main__":
    main()
