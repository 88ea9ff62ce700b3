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


def option_helps(command: str) -> dict[str, str]:
    """`ideogram-trt COMMAND --help` as {long flag: its help text, line wrapping undone}."""
    result = run(command, "--help")
    assert result.returncode == 0, result.stderr
    helps: dict[str, str] = {}
    flag = ""
    for line in result.stdout.split("options:\n", 1)[1].splitlines():
        if line.startswith("  -"):
            head, _, text = line.strip().partition("  ")
            flag = next(token.rstrip(",") for token in head.split() if token.startswith("--"))
            helps[flag] = text.strip()
        elif flag and line.startswith("    "):
            helps[flag] = f"{helps[flag]} {line.strip()}".strip()
    return helps


EXPORT_FLAGS = ("--recipe", "--dtype", "--calibration", "--components", "--quantize-attention",
                "--quantize-text-encoder", "--exclude", "--opset", "--external-data", "--lora-rank")  # fmt: skip


def test_build_engines_lists_the_export_options_of_export() -> None:
    """The export options are declared once: build-engines --help lists every one of export's, with its help
    (two worded for the build: --dtype defaults by flavor there), and --recipe's choices come from the enum."""
    from ideogram_trt.cli import BUILD_EXPORT_CHANGES, EXPORT_OPTIONS
    from ideogram_trt.core.recipes import Recipe

    export, build = option_helps("export"), option_helps("build-engines")
    assert tuple(o.flags[0] for o in EXPORT_OPTIONS) == EXPORT_FLAGS
    worded = {"--" + dest.replace("_", "-"): change["help"] for dest, change in BUILD_EXPORT_CHANGES.items()}
    assert sorted(worded) == ["--dtype", "--quantize-attention"]
    for flag in EXPORT_FLAGS:
        assert export[flag], flag
        assert build[flag] == worded.get(flag, export[flag]), flag
    assert export["--recipe"] == build["--recipe"] == "bf16 | fp8-wo | fp8 (default fp8)"
    assert " | ".join(r.value for r in Recipe) in export["--recipe"]
    assert export["--calibration"] == "calibration file (fp8 recipe)"
    assert export["--opset"] == build["--opset"] == "ONNX opset (>= 21; default 21)"
    assert build["--external-data"] == "auto (above 1.8 GB) | always | never"
    assert build["--exclude"] == "keep a linear out of Q/DQ"
    text = " ".join(run("export", "--help").stdout.split())
    assert (
        "Recipes: bf16 (dequantized weights), fp8-wo (the release's FP8 weights + DequantizeLinear), fp8 (plus "
        "calibrated activation Q/DQ on qkv/o/w1/w2/w3; needs --calibration)." in text
    )


def test_export_and_build_engines_default_the_export_options_alike() -> None:
    from ideogram_trt.cli import build_parser
    from ideogram_trt.engines.builder import BuildRequest

    parser = build_parser()
    export = vars(parser.parse_args(["export", "--model", "m", "--out", "o"]))
    build = vars(parser.parse_args(["build-engines", "--model", "m", "--out", "o"]))
    shared = ("recipe", "calibration", "components", "quantize_attention", "quantize_text_encoder", "exclude",
              "opset", "external_data")  # fmt: skip
    assert {k: export[k] for k in shared} == {k: build[k] for k in shared}
    assert (export["dtype"], build["dtype"]) == ("bf16", None)  # build-engines: by flavor
    request = BuildRequest(out=Path("o"), recipe="fp8", buckets=[])
    assert (request.excluded, request.opset, request.external_data) == (
        tuple(build["exclude"]),
        build["opset"],
        build["external_data"],
    )


def test_shared_serving_options_read_alike() -> None:
    """--engines, --allow-other-gpu, --backend and --height/--width are declared once for the commands that take
    them (bench's --engines is optional and unexplained, as before)."""
    helps = {c: option_helps(c) for c in ("inspect", "generate", "bench", "triton-repo", "triton-client")}
    assert helps["generate"]["--engines"] == helps["triton-repo"]["--engines"] == "engine set folder"
    assert helps["bench"]["--engines"] == ""
    assert helps["inspect"]["--allow-other-gpu"] == helps["generate"]["--allow-other-gpu"]
    assert "another GPU model of the same compute capability" in helps["inspect"]["--allow-other-gpu"]
    assert (
        helps["generate"]["--backend"]
        == helps["bench"]["--backend"]
        == ("onnxruntime | tensorrt (default: the engine set's flavor)")
    )
    for flag in ("--height", "--width"):
        assert helps["generate"][flag] == helps["triton-client"][flag] == ""


def test_recipe_help_needs_no_torch() -> None:
    """Recipe names, help and choices come from ideogram_trt.core.recipes: --help imports no torch."""
    check = (
        "import sys\n"
        "from ideogram_trt.cli import main\n"
        "for command in ('export', 'build-engines', 'calibrate'):\n"
        "    try:\n"
        "        main([command, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "import ideogram_trt.core.recipes as core, ideogram_trt.cli\n"
        "print('torch' in sys.modules, core.Recipe.FP8.needs_calibration)\n"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False True"


def test_export_recipes_re_exports_the_core_recipe() -> None:
    from ideogram_trt.core import recipes as core
    from ideogram_trt.export import exporter
    from ideogram_trt.export import recipes as export

    assert export.Recipe is core.Recipe and export.parse_enum is core.parse_enum
    assert export.DEFAULT_RECIPE is core.DEFAULT_RECIPE is core.Recipe.FP8
    assert exporter.DEFAULT_OPSET == core.DEFAULT_OPSET
    assert [r.value for r in core.Recipe if r.needs_calibration] == ["fp8"]
    assert [r.value for r in core.Recipe if r.fp8_weights] == ["fp8-wo", "fp8"]
