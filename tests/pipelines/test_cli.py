"""The `nsh` command: lists its commands, rejects unknown ones, passes options through to the pipeline."""
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import cli


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as code:
        cli.main(["--help"])
    assert code.value.code == 0
    out = capsys.readouterr().out
    assert all(c in out for c in ("train", "tune", "encode", "evaluate"))


def test_unknown_command_exits_2_with_the_list(capsys):
    with pytest.raises(SystemExit) as code:
        cli.main(["trian"])
    assert code.value.code == 2 and "commands:" in capsys.readouterr().out


def test_installed_console_script_shows_a_pipelines_own_help():
    script = Path(sys.executable).parent / "nsh"
    proc = subprocess.run([str(script), "encode", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--config" in proc.stdout and "Ray Data" in proc.stdout


def test_help_explains_every_config_key(capsys):
    from nsh.config import Config
    from pipelines import train

    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = capsys.readouterr().out
    for section, field in Config.model_fields.items():
        for key in getattr(field.annotation, "model_fields", {}):
            assert f"  {section}.{key} (" in out, f"{section}.{key} missing from --help"
    assert "loss.sorter (softsort|torchsort, default 'softsort')" in out
