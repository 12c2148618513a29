"""Command-line pieces the benches share."""
from __future__ import annotations

import argparse
import platform
from pathlib import Path


def pick(parser: argparse.ArgumentParser, names, words: list[str] | None, flag: str) -> list[str]:
    """The names that contain one of `words`, all of them when no words are given. A word that is a whole name
    picks that name alone, so that a method whose name begins another's can be run by itself.

    A word that matches nothing is an error rather than a silent no-op: it is most often a config override
    (key=value) that a nargs option swallowed, and the bench would otherwise run with the preset's settings.
    """
    names = list(names)
    if not words:
        return names
    unknown = [w for w in words if not any(w in n for n in names)]
    if unknown:
        parser.error(f"{flag} {' '.join(unknown)!r} matches no name (known: {'; '.join(names)}). "
                     f"Config overrides (key=value) go before {flag}, or after --.")
    return [n for n in names if n in words or any(w in n for w in words if w not in names)]


def with_whole_names(argv: list[str], flag: str, chosen: list[str]) -> list[str]:
    """argv with the words after `flag` replaced by the whole names they picked.

    A results file records the command that made it. Its words would pick more methods once more are added
    (a word such as 'lr 8e-3' matches every later method with that learning rate); whole names pick the same
    methods for good.
    """
    out, i = [], 0
    while i < len(argv):
        if argv[i] == flag or argv[i].startswith(flag + "="):
            out += [flag, *chosen]
            i += 1
            while i < len(argv) and not argv[i].startswith("-"):
                i += 1
            continue
        out.append(argv[i])
        i += 1
    return out


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model and its widest vector instructions, e.g. "AMD EPYC, AVX2": the same backbone can round
    differently on another CPU (oneDNN picks its kernels by instruction set), so a feature cache rebuilt there need
    not match the one a results file was measured on."""
    fields: dict[str, str] = {}  # the first processor's, which the others repeat
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    model = fields.get("model name") or platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    isa = next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX")) if flag in flags),
               None)
    return f"{model}, {isa}" if isa else model
