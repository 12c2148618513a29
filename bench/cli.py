"""Command-line pieces the benches share."""
from __future__ import annotations

import argparse


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
