"""The benches' name filter: words select by substring or by whole name, and a word that selects nothing is refused."""
import argparse

import pytest

from bench.cli import pick

NAMES = ["LSH", "ITQ", "NT-Xent on codes, tau 0.5", "NSH torchsort, tau 0.5"]


def test_no_words_picks_every_name_in_order():
    assert pick(argparse.ArgumentParser(), NAMES, None, "--methods") == NAMES


def test_a_word_picks_every_name_that_contains_it():
    assert pick(argparse.ArgumentParser(), NAMES, ["tau 0.5", "LSH"], "--methods") == [
        "LSH", "NT-Xent on codes, tau 0.5", "NSH torchsort, tau 0.5"]


def test_a_word_that_is_a_whole_name_picks_that_name_alone():
    names = NAMES + ["NT-Xent on codes, tau 0.5, lr 8e-3"]
    assert pick(argparse.ArgumentParser(), names, ["NT-Xent on codes, tau 0.5"], "--methods") == [
        "NT-Xent on codes, tau 0.5"]
    assert pick(argparse.ArgumentParser(), names, ["NT-Xent on codes, tau 0.5", "lr 8e-3"], "--methods") == [
        "NT-Xent on codes, tau 0.5", "NT-Xent on codes, tau 0.5, lr 8e-3"]


def test_a_swallowed_config_override_is_an_error_that_says_where_overrides_go(capsys):
    p = argparse.ArgumentParser(prog="quality.py")
    p.add_argument("--methods", nargs="+")
    p.add_argument("overrides", nargs="*")
    a = p.parse_intermixed_args(["--methods", "LSH", "data.image_size=160"])
    with pytest.raises(SystemExit) as code:
        pick(p, NAMES, a.methods, "--methods")
    assert code.value.code == 2
    err = capsys.readouterr().err
    assert "'data.image_size=160' matches no name" in err and "go before --methods" in err
