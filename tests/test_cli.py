"""The command line: help texts, exit codes, and clean failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ideogram_trt.cli import main

SCRIPT = Path(sys.executable).parent / "ideogram-trt"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, check=False)


def test_console_script_help_lists_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("make-tiny", "check", "to-diffusers"):
        assert command in result.stdout
    assert "TensorRT" in result.stdout


def test_make_tiny_help_describes_the_layout() -> None:
    result = run("make-tiny", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "release layout" in text and "--seed" in text and "Only widths shrink: 36" in text


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: ideogram-trt" in capsys.readouterr().out


def test_make_tiny_refuses_a_non_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["make-tiny", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "not empty (pass --overwrite" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]  # nothing half-written


def test_make_tiny_rejects_bad_widths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["make-tiny", str(tmp_path / "t"), "--head-dim", "7"]) == 2
    assert "--head-dim must be even" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_make_tiny_release_config_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["make-tiny", str(tmp_path / "r"), "--config", "release", "--layers", "3"]) == 2
    assert "--config release fixes every width; drop --layers" in capsys.readouterr().err
    assert main(["make-tiny", str(tmp_path / "r"), "--components", "transformer,unet"]) == 2
    assert "--components: unknown unet" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
