"""Which bench sections were scored on one build of the feature cache, sections written before digests included.

A rebuilt cache can re-roll every trained run (sessions 33, 36, 42). Sections from session 43 on record the digest
of their plain-view features (`plain_features`, listed here); older ones do not, but every section keeps the float
features' mAP@k at full precision, and that number tells builds apart: it is an exact function of the plain
features, and the builds seen so far moved it in the sixth or seventh decimal. This groups the sections whose names
start with a prefix by that fingerprint and compares the trained runs two sections both hold (same method, length,
seed and section-defining settings). Runs on two builds of the plain features have never scored the same; runs on
one build often do, but need not: the fingerprint does not cover the cached training views (the row digests from
session 43 on do), nor settings outside the section-defining ones, nor code that changed between the sections.

    python bench/builds.py fashion_mnist_160px
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.quality import RESULTS, SECTION_DEFINING, family  # noqa: E402


def fingerprint(section: dict) -> str:
    """The float features' mAP at full precision, which every section holds (the digest, from session 43 on, is
    listed beside it: grouping by it would split a new section from the old ones of its build)."""
    ceiling = [r["map"] for r in section["rows"] if r["bits"] is None]
    if not ceiling:
        raise ValueError(f"section {section['tag']} holds no float features' mAP (its ceiling row) to tell its "
                         "build by")
    return f"float mAP {ceiling[0]!r}"


def repeated_runs(sections: list[dict]) -> dict[tuple, list[tuple[str, str, float]]]:
    """(settings, method, bits, seed) -> [(tag, fingerprint, test mAP)] for every trained run that two or more sections
    hold."""
    runs: dict[tuple, list[tuple[str, str, float]]] = {}
    for s in sections:
        settings = json.dumps([s.get(k) for k in SECTION_DEFINING], sort_keys=True)
        build = fingerprint(s)
        for r in s["rows"]:
            if family(r["method"]):
                runs.setdefault((settings, r["method"], r["bits"], r["seed"]), []).append((s["tag"], build, r["map"]))
    return {k: v for k, v in runs.items() if len({tag for tag, _, _ in v}) > 1}


def report(sections: list[dict]) -> list[str]:
    """Lines grouping the sections by build of the plain features and tallying the repeated runs, naming those that
    scored differently on one build."""
    groups: dict[str, list[str]] = {}
    for s in sections:
        digest = f" (digest {s['plain_features']})" if s.get("plain_features") else ""
        groups.setdefault(fingerprint(s), []).append(s["tag"] + digest)
    lines = [f"{len(groups)} build(s) of the plain features among {len(sections)} sections:"]
    lines += [f"  {fp}: {', '.join(tags)}" for fp, tags in groups.items()]
    tally: Counter[tuple[bool, bool]] = Counter()  # (same build, same score) -> pairs
    broken = []
    for (_, method, bits, seed), held in repeated_runs(sections).items():
        for i, (tag_a, fp_a, map_a) in enumerate(held):
            for tag_b, fp_b, map_b in held[i + 1:]:
                same_build, same_score = fp_a == fp_b, map_a == map_b
                tally[same_build, same_score] += 1
                if same_build and not same_score:
                    broken.append(f"  {method!r}, {bits} bits, seed {seed}: {map_a!r} in {tag_a}, {map_b!r} in {tag_b}")
    lines += ["trained runs two sections both hold, compared pairwise:",
              f"  one build: {tally[True, True]} identical, {tally[True, False]} different",
              f"  two builds: {tally[False, True]} identical, {tally[False, False]} different"]
    if broken:
        lines += ["one build of the plain features, yet different scores (other training views, settings or code):",
                  *broken]
    return lines


def load(prefix: str, folder: Path | None = None) -> list[dict]:
    folder = RESULTS if folder is None else folder
    paths = sorted(folder.glob(f"{prefix}*.json"))
    if not paths:
        raise SystemExit(f"no section starts with {prefix!r} in {folder}")
    return [json.loads(p.read_text()) for p in paths]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefix", help="sections whose tag starts with this, e.g. fashion_mnist_160px")
    print("\n".join(report(load(parser.parse_args(argv).prefix))))


if __name__ == "__main__":
    main()
