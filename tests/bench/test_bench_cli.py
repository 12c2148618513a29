"""The benches' name filter: words select by substring or by whole name, and a word that selects nothing is refused."""
import argparse

import pytest

from bench.cli import cpu_name, pick, with_whole_names

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


def test_a_recorded_command_names_the_methods_it_ran_whole_so_later_methods_do_not_join_it():
    argv = ["--config", "c.yaml", "--methods", "LSH", "tau 0.5", "--tag", "t", "data.image_size=160"]
    chosen = pick(argparse.ArgumentParser(), NAMES, ["LSH", "tau 0.5"], "--methods")
    recorded = with_whole_names(argv, "--methods", chosen)
    assert recorded == ["--config", "c.yaml", "--methods", "LSH", "NT-Xent on codes, tau 0.5",
                        "NSH torchsort, tau 0.5", "--tag", "t", "data.image_size=160"]
    later = NAMES + ["NSH softsort, tau 0.5"]
    p = argparse.ArgumentParser()
    p.add_argument("--config")
    p.add_argument("--tag")
    p.add_argument("--methods", nargs="+")
    p.add_argument("overrides", nargs="*")
    again = p.parse_intermixed_args(recorded)
    assert pick(p, later, again.methods, "--methods") == chosen
    assert again.overrides == ["data.image_size=160"]
    assert with_whole_names(["--methods=LSH", "ITQ"], "--methods", ["LSH", "ITQ"]) == ["--methods", "LSH", "ITQ"]
    assert with_whole_names(argv[:2], "--methods", NAMES) == argv[:2]


def test_cpu_name_gives_the_model_and_its_widest_vector_instructions(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9454\nflags\t\t: fpu sse2 avx avx2 avx512f\n\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC 9454\nflags\t\t: fpu sse2 avx avx2 avx512f\n")
    assert cpu_name(info) == "AMD EPYC 9454, AVX-512"
    info.write_text("model name\t: Intel Xeon\nflags\t\t: fpu sse2 avx avx2\n")
    assert cpu_name(info) == "Intel Xeon, AVX2"
    assert cpu_name(tmp_path / "absent")  # no /proc/cpuinfo (not Linux): the platform's own name, never empty
