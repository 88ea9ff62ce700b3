"""Issue 12, generate and bench: outputs that are not regular files or new paths, non-finite numbers and latents,
unbounded requests, values that used to be internal errors, prompt files without torch, and PNG temporaries
after a full disk or a kill. Every refusal is one ``error:`` line with a non-zero exit, and nothing outside the
folders a test names changes. One ONNX Runtime engine set (256x256) serves the module."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error, run_cli, snapshot

from ideogram_trt.core import prompts as prompt_files
from ideogram_trt.core.errors import EngineOutputError, InputError
from ideogram_trt.core.files import TMP_MARK
from ideogram_trt.core.requests import MAX_IMAGES_PER_REQUEST, MAX_STEPS
from ideogram_trt.runtime import Pipeline
from ideogram_trt.runtime.backend import Generated
from ideogram_trt.runtime.onnxruntime_backend import OnnxRuntimeBackend

FAST = ["--preset", "V4_INSTANT_8"]


@pytest.fixture(scope="module")
def engines(bf16_engines: Path) -> Path:
    """The session's bf16 ONNX Runtime set (conftest; test_runtime.py uses it too): one build for the suite."""
    return bf16_engines


@pytest.fixture(scope="module")
def pipe(engines: Path) -> Pipeline:
    return Pipeline.from_engines(engines)


@pytest.fixture(autouse=True)
def reuse(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs over the module's engine set open it once (2 s a time on two cores): ``from_engines`` of
    that folder returns the module's pipeline. Subprocesses and other folders open engines as usual."""
    if "engines" not in request.fixturenames:
        return
    engines, pipe = request.getfixturevalue("engines"), request.getfixturevalue("pipe")
    real = Pipeline.from_engines

    def opened(path: str | Path, backend: str | None = None, **options: object) -> Pipeline:
        return pipe if Path(path) == engines and backend is None else real(path, backend, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(Pipeline, "from_engines", staticmethod(opened))


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A work folder that is also the current one (relative outputs such as ``-`` land here)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def no_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if an engine set is even opened: these refusals come first."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the engine set was opened before the request was refused")

    monkeypatch.setattr(Pipeline, "from_engines", refuse)


@pytest.fixture
def alarm() -> Iterator[None]:
    """A FIFO opened for reading or writing would block forever: fail after 20 s instead of hanging."""

    def expire(*_args: object) -> None:
        raise TimeoutError("blocked (a FIFO opened?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def generate(engines: Path, *args: object) -> list[str]:
    return ["generate", "a cat", "--engines", str(engines), *FAST, *(str(a) for a in args)]


def identity(path: Path) -> tuple[int, int, int]:
    info = os.lstat(path)
    return info.st_mode, info.st_ino, info.st_size


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(f"*{TMP_MARK}*"))


# --- 2. outputs that are not regular files or new paths -------------------------------------------------------


def make_output(kind: str, path: Path, outside: Path) -> str:
    """Put a ``kind`` of non-file at ``path``; the error's needle."""
    if kind == "char-device":
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # another /dev/null
        except PermissionError:
            path.symlink_to("/dev/zero")
            return "a symbolic link"
        return "a device"
    if kind == "fifo":
        os.mkfifo(path)
        return "a FIFO"
    if kind == "directory":
        path.mkdir()
        return "a directory"
    path.symlink_to(outside / "theirs.png" if kind == "link-outside" else path.parent / "gone.png")
    return "a symbolic link"


IN_PLACE = ["char-device", "fifo", "directory", "link-outside", "dangling-link"]  # made at the output path
FIXED = {"dev-null": ("/dev/null", "a device"), "parent-is-file": ("notes.txt/out.png", "notes.txt is not a folder"),
         "stdout": ("-", "standard output"), "cwd": (".", "a directory")}  # fmt: skip


@pytest.mark.parametrize("count", [1, 3])
@pytest.mark.parametrize("kind", IN_PLACE + sorted(FIXED))
def test_outputs_that_are_not_files_are_refused_before_engines(
    kind: str, count: int, here: Path, tmp_path: Path, capsys, no_engines: None, alarm: None
) -> None:
    """-o PATH, and with -n 3 the middle one of PATH-0.png … PATH-2.png, never replaces or follows a non-file."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "theirs.png").write_bytes(b"their picture")
    (here / "notes.txt").write_text("mine")
    if kind in FIXED:
        output, needle = FIXED[kind]
        victim = Path(output) if os.path.lexists(output) else None
    else:
        output = "series.png"
        victim = here / ("series.png" if count == 1 else "series-1.png")
        needle = make_output(kind, victim, outside)
    before = snapshot(here, outside)
    where = identity(victim) if victim is not None else None
    code, out, err = run_cli(generate(Path("/nonexistent-engines"), "-o", output, "-n", count), capsys)
    assert_one_line_error(code, err, needle)
    assert code == 2 and out == ""
    assert snapshot(here, outside) == before
    if victim is not None:
        assert identity(victim) == where
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


def test_default_output_and_reruns_still_work(engines: Path, here: Path, capsys) -> None:
    code, out, err = run_cli(generate(engines, "-n", 2, "-o", "pictures/fox.png"), capsys)
    assert code == 0, err
    assert out.split() == ["pictures/fox-0.png", "pictures/fox-1.png"]
    first = (here / "pictures/fox-1.png").read_bytes()
    code, _, err = run_cli(generate(engines, "-n", 2, "-o", "pictures/fox.png", "--seed", 5), capsys)
    assert code == 0, err
    assert (here / "pictures/fox-1.png").read_bytes() != first  # a regular file is replaced
    assert leftovers(here) == []


# --- 15. full disk and kill while writing a PNG ---------------------------------------------------------------


def test_full_disk_keeps_the_previous_png(engines: Path, here: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    previous = b"\x89PNG previous picture"
    (here / "out.png").write_bytes(previous)
    before = snapshot(engines)
    monkeypatch.setenv("IDEOGRAM_TRT_FAILPOINT", "enospc@*.png")
    code, out, err = run_cli(generate(engines, "-o", "out.png"), capsys)
    assert_one_line_error(code, err, os.strerror(errno.ENOSPC), "out.png")
    assert out == "" and (here / "out.png").read_bytes() == previous
    assert sorted(p.name for p in here.iterdir()) == ["out.png"]  # no temporary
    assert snapshot(engines) == before


def test_killed_write_keeps_the_previous_png_and_a_rerun_cleans_up(engines: Path, here: Path, capsys) -> None:
    previous = b"\x89PNG previous picture"
    (here / "out.png").write_bytes(previous)
    env = {**os.environ, "IDEOGRAM_TRT_FAILPOINT": "kill@out.png"}
    command = [sys.executable, "-m", "ideogram_trt", *generate(engines, "-o", "out.png")]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=here, check=False)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert (here / "out.png").read_bytes() == previous
    assert len(leftovers(here)) == 1  # the killed writer's temporary, which the next run removes
    code, _, err = run_cli(generate(engines, "-o", "out.png"), capsys)
    assert code == 0, err
    assert (here / "out.png").read_bytes().startswith(b"\x89PNG\r\n") and leftovers(here) == []


# --- 7. non-finite guidance and latents ------------------------------------------------------------------------


def test_non_finite_latents_from_real_engines_are_refused(pipe: Pipeline) -> None:
    tokens = pipe.manifest.bucket_objects[0].tokens  # 256x256
    for value, stage in ((3e38, "non-finite latents"), (1e30, "non-finite pixels")):
        start = np.full((1, tokens, pipe._channels), value, dtype=np.float32)  # finite noise the DiT overflows
        with pytest.raises(EngineOutputError, match=f"{stage}.*broken: run `ideogram-trt check`"):
            pipe("a cat", latents=start, preset="V4_INSTANT_8")
    with pytest.raises(InputError, match="latents hold NaN or Inf"):
        pipe("a cat", latents=np.full((1, tokens, pipe._channels), np.nan, np.float32), preset="V4_INSTANT_8")


@pytest.mark.parametrize("broken", ["latents", "images"])
def test_cli_writes_no_png_from_non_finite_engines(
    engines: Path, here: Path, capsys, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    real = OnnxRuntimeBackend.generate

    def poisoned(self: OnnxRuntimeBackend, inputs, on_step=None) -> Generated:  # type: ignore[no-untyped-def]
        out = real(self, inputs, on_step)
        getattr(out, broken).flat[len(getattr(out, broken).flat) // 2] = np.inf if broken == "images" else np.nan
        return out

    monkeypatch.setattr(OnnxRuntimeBackend, "generate", poisoned)
    (here / "keep.png").write_bytes(b"old")
    before = snapshot(here, engines)
    code, out, err = run_cli(generate(engines, "-n", 2, "-o", "keep.png"), capsys)
    assert_one_line_error(code, err, "non-finite", "broken: run `ideogram-trt check`")
    assert snapshot(here, engines) == before and out == ""


# --- 8, 11, 13. numbers a request can get wrong -----------------------------------------------------------------


REFUSED = [
    (["--steps", "0"], ["steps 0", f"1 to {MAX_STEPS}"]),
    (["--steps", "-4"], ["steps -4", f"1 to {MAX_STEPS}"]),
    (["--steps", "100000"], ["steps 100000", f"1 to {MAX_STEPS}"]),
    (["-n", "5000"], ["5000 images", f"limit of {MAX_IMAGES_PER_REQUEST}"]),
    (["-n", str(2**31)], [str(2**31), f"limit of {MAX_IMAGES_PER_REQUEST}"]),
    (["-n", "0"], ["at least 1, got 0"]),
    (["-n", "-3"], ["at least 1, got -3"]),
    (["--seed", "-1"], ["seed -1", "2**63 - 1"]),
    (["--seed", str(2**64)], [f"seed {2**64}", "2**63 - 1"]),
    (["--seed", str(2**63 - 1), "-n", "2"], ["2**63 - 2 for 2 images"]),
    (["--guidance", "nan"], ["--guidance 'nan'", "not finite"]),
    (["--guidance", "inf"], ["'inf' is not finite"]),
    (["--guidance=-inf"], ["'-inf' is not finite"]),
    (["--guidance", "1e400"], ["'1e400' is not finite"]),
    (["--guidance", "7,nan,3"], ["'nan' (value 2 of 3) is not finite"]),
    (["--guidance", "abc"], ["'abc' is not a number"]),
    (["--guidance", "1,,2"], ["an empty value (value 2 of 3)"]),
    (["--guidance", ""], ["an empty value"]),
    (["--guidance", ",".join(["7"] * (MAX_STEPS + 1))], [f"at most {MAX_STEPS}"]),
]

REFUSED_AFTER_LOADING = [
    (["--guidance", "7,7,3", "--steps", "8"], ["3 values", "--steps is 8"]),
    (["--height", "0", "--width", "256", "--snap"], ["height 0", "positive"]),
    (["--height", "256", "--width", "-256", "--snap"], ["width -256", "positive"]),
    (["--height", "-16", "--width", "256"], ["height -16"]),
    (["--bucket", "garbage"], ["unknown bucket 'garbage'", "256x256"]),
    (["--height", "256"], ["give both --height and --width"]),
]


@pytest.mark.parametrize(("args", "needles"), REFUSED, ids=[" ".join(a)[:40] for a, _ in REFUSED])
def test_bad_numbers_are_refused_before_engines(
    args: list[str], needles: list[str], here: Path, capsys, no_engines: None
) -> None:
    before = snapshot(here)
    code, out, err = run_cli(generate(Path("/nonexistent-engines"), "-o", "x.png", *args), capsys)
    assert_one_line_error(code, err, *needles)
    assert snapshot(here) == before and out == ""


@pytest.mark.parametrize(
    ("args", "needles"), REFUSED_AFTER_LOADING, ids=[" ".join(a) for a, _ in REFUSED_AFTER_LOADING]
)
def test_bad_sizes_and_schedules_are_refused(
    args: list[str], needles: list[str], engines: Path, here: Path, capsys
) -> None:
    before = snapshot(here, engines)
    code, out, err = run_cli(generate(engines, "-o", "x.png", *args), capsys)
    assert_one_line_error(code, err, *needles)
    assert snapshot(here, engines) == before and out == ""


@pytest.mark.parametrize(
    "prompt", ["\udcff", "caf\udce9 au lait", "\ud800", "   "], ids=["0xff", "latin-1", "lone-surrogate", "blank"]
)
def test_bad_prompt_arguments_are_refused(prompt: str, here: Path, capsys, no_engines: None) -> None:
    before = snapshot(here)
    code, _, err = run_cli(["generate", prompt, "--engines", "/nonexistent", "-o", "x.png"], capsys)
    assert_one_line_error(code, err, "prompt argument 1")
    assert snapshot(here) == before


def test_steps_and_guidance_lists_share_one_rule(pipe: Pipeline) -> None:
    """In the pipeline, so Triton and the CLI agree: steps ≥ 1 (0 is no longer 'the preset'), a guidance list
    sets the step count, an explicit steps must equal its length, one value repeats."""
    bucket = pipe.manifest.bucket_objects[0]
    for bad in (0, -4, MAX_STEPS + 1, True):
        with pytest.raises(InputError, match=f"steps {bad!r}: give a whole number from 1 to {MAX_STEPS}"):
            pipe.sampling_plan(bucket, "V4_TURBO_12", steps=bad)  # type: ignore[arg-type]
    assert pipe.sampling_plan(bucket, "V4_TURBO_12", guidance=[7.0, 7.0, 3.0]).schedule.steps == 3
    assert pipe.sampling_plan(bucket, "V4_TURBO_12", steps=3, guidance=[7.0, 7.0, 3.0]).schedule.steps == 3
    assert pipe.sampling_plan(bucket, "V4_TURBO_12", steps=5, guidance=4.0).schedule.guidance.tolist() == [4.0] * 5
    assert pipe.sampling_plan(bucket, "V4_TURBO_12", guidance=4.0).schedule.steps == 12
    # Other step counts keep the preset's main guidance (7, docs/MODEL.md §5.4) on every step; its own count keeps
    # the list.
    assert pipe.sampling_plan(bucket, "V4_TURBO_12", steps=5).schedule.guidance.tolist() == [7.0] * 5
    assert pipe.sampling_plan(bucket, "V4_TURBO_12").schedule.guidance.tolist() == [7.0] * 11 + [3.0]
    with pytest.raises(InputError, match="gives 3 values but --steps is 8"):
        pipe.sampling_plan(bucket, "V4_TURBO_12", steps=8, guidance=[7.0, 7.0, 3.0])
    for bad_guidance in (float("nan"), float("inf"), [1.0, float("-inf")], []):
        with pytest.raises(InputError, match=r"finite|empty"):
            pipe.sampling_plan(bucket, "V4_TURBO_12", guidance=bad_guidance)
    with pytest.raises(InputError, match=f"above the limit of {MAX_IMAGES_PER_REQUEST}"):
        pipe("a cat", num_images=2**31)  # refused before any noise is allocated
    with pytest.raises(InputError, match=f"above the limit of {MAX_IMAGES_PER_REQUEST}"):
        pipe.step_reports(pipe.sampling_plan(bucket), 1, 2**31)
    with pytest.raises(InputError, match="seed -1"):
        pipe("a cat", seed=-1)


def test_a_guidance_list_sets_the_step_count_on_the_command_line(engines: Path, here: Path, capsys) -> None:
    code, _, err = run_cli(generate(engines, "--guidance", "7,7,3", "-o", "x.png"), capsys)
    assert code == 0, err
    assert "(3 steps:" in err


# --- bench ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--runs", "0"], ["--runs 0", "1 to 1000"]),
        (["--runs", "-2"], ["--runs -2"]),
        (["--runs", "100000"], ["--runs 100000"]),
        (["--preset", "V9"], ["unknown preset 'V9'"]),
        (["--flops", "--bucket", "garbage"], ["bucket 'garbage'", "HEIGHTxWIDTH"]),
        (["--flops", "--bucket", "1024x1024", "--text-tokens", "0"], ["--text-tokens 0"]),
        (["--flops", "--bucket", "1024x1024", "--text-tokens", "-5"], ["--text-tokens -5"]),
        (["--json", "/dev/null", "--flops", "--bucket", "1024x1024"], ["/dev/null: a device", "--json output"]),
        (["--json", "."], ["a directory", "--json output"]),
    ],
)
def test_bench_refuses_bad_arguments_before_timing(
    args: list[str], needles: list[str], here: Path, capsys, no_engines: None
) -> None:
    before = snapshot(here)
    code, _, err = run_cli(["bench", "--engines", "/nonexistent", *args], capsys)
    assert_one_line_error(code, err, *needles)
    assert snapshot(here) == before
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


def test_bench_unknown_bucket_and_atomic_json(
    engines: Path, here: Path, capsys, monkeypatch: pytest.MonkeyPatch, alarm: None
) -> None:
    code, _, err = run_cli(["bench", "--engines", engines, "--bucket", "garbage", "--runs", "1"], capsys)
    assert_one_line_error(code, err, "unknown bucket 'garbage'")
    os.mkfifo(here / "fifo.json")
    code, _, err = run_cli(["bench", "--engines", engines, "--json", "fifo.json"], capsys)
    assert_one_line_error(code, err, "fifo.json: a FIFO")
    (here / "bench.json").write_text("previous")
    args = ["bench", "--engines", engines, "--runs", "1", *FAST, "--json", "bench.json"]
    monkeypatch.setenv("IDEOGRAM_TRT_FAILPOINT", "enospc@bench.json")
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, os.strerror(errno.ENOSPC))
    assert (here / "bench.json").read_text() == "previous" and leftovers(here) == []
    monkeypatch.delenv("IDEOGRAM_TRT_FAILPOINT")
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert json.loads((here / "bench.json").read_text())["runs"] == 1 and leftovers(here) == []


# --- 16. prompt files --------------------------------------------------------------------------------------------


PROMPT_FILES = {
    "latin-1": ("p.txt", "a caf\xe9 at night\n".encode("latin-1"), "p.txt:1: not valid UTF-8"),
    "latin-1-line-3": ("p.jsonl", b'{"prompt": "a"}\n\n{"prompt": "\xff"}\n', "p.jsonl:3: not valid UTF-8"),
    "number": ("p.jsonl", b'{"prompt": "a cat"}\n{"prompt": 42}\n', "p.jsonl:2: 'prompt' is 42"),
    "null": ("p.jsonl", b'{"prompt": null}\n', "p.jsonl:1: 'prompt' is None"),
    "empty-string": ("p.jsonl", b'{"prompt": ""}\n', "p.jsonl:1: 'prompt' is ''"),
    "list": ("p.jsonl", b'["a cat"]\n', "p.jsonl:1: no 'prompt' field"),
    "not-json": ("p.jsonl", b"a cat\n", "p.jsonl:1: not JSON"),
    "no-field": ("p.jsonl", b'{"text": "a cat"}\n', "no 'prompt' field"),
    "lone-surrogate": ("p.jsonl", b'{"prompt": "\\ud800"}\n', "p.jsonl:1: not valid UTF-8"),
    "empty": ("p.txt", b"", "no prompts"),
    "blank": ("p.txt", b"\n  \n\r\n", "no prompts"),
}


@pytest.mark.parametrize("case", sorted(PROMPT_FILES))
def test_bad_prompt_files_are_refused(case: str, here: Path, capsys, no_engines: None) -> None:
    name, data, needle = PROMPT_FILES[case]
    (here / name).write_bytes(data)
    before = snapshot(here)
    code, _, err = run_cli(["generate", "--prompt-file", name, "--engines", "/nonexistent", "-o", "x.png"], capsys)
    assert_one_line_error(code, err, needle)
    assert snapshot(here) == before


@pytest.mark.parametrize("kind", ["directory", "fifo", "missing", "too-big", "too-many-lines"])
def test_prompt_files_that_are_not_files_or_too_big(
    kind: str, here: Path, capsys, no_engines: None, alarm: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = here / "prompts.txt"
    monkeypatch.setattr(prompt_files, "MAX_PROMPT_FILE_BYTES", 1000)
    monkeypatch.setattr(prompt_files, "MAX_PROMPT_FILE_LINES", 10)
    needle = {"directory": "a directory", "fifo": "not a regular file", "missing": "not found",
              "too-big": "1001 bytes, above the 1000 byte limit", "too-many-lines": "11 prompts"}[kind]  # fmt: skip
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "too-big":
        path.write_text("x" * 1001)
    elif kind == "too-many-lines":
        path.write_text("a cat\n" * 11)
    before = snapshot(here)
    code, _, err = run_cli(["generate", "--prompt-file", path, "--engines", "/nonexistent", "-o", "x.png"], capsys)
    assert_one_line_error(code, err, "prompts.txt", needle)
    assert snapshot(here) == before


def test_calibration_keeps_its_default_prompts(here: Path) -> None:
    from ideogram_trt.export.calibration import read_prompts
    from ideogram_trt.model.tiny_tokenizer import default_prompts

    assert read_prompts(None) == default_prompts()
    (here / "p.jsonl").write_text('{"prompt": "a cat"}\n\n{"prompt": "a dog"}\n')
    assert read_prompts(here / "p.jsonl") == ["a cat", "a dog"]


NO_TORCH = """
import importlib.abc, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "diffusers"):
            raise ModuleNotFoundError(f"No module named {name!r} (refused: a serving-only install)", name=name)
        return None

sys.meta_path.insert(0, Refuse())
from ideogram_trt.cli import main
code = main(sys.argv[1:])
assert not any(m in sys.modules for m in ("torch", "transformers", "diffusers"))
raise SystemExit(code)
"""


def test_prompt_file_generation_needs_no_torch(engines: Path, here: Path) -> None:
    (here / "prompts.txt").write_text("a cat\na red fox\n", encoding="utf-8")
    argv = ["generate", "--prompt-file", "prompts.txt", "--engines", str(engines), *FAST, "-o", "out.png"]
    result = subprocess.run([sys.executable, "-c", NO_TORCH, *argv], capture_output=True, text=True, cwd=here)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["out-0.png", "out-1.png"]
    assert all((here / name).read_bytes().startswith(b"\x89PNG") for name in ("out-0.png", "out-1.png"))
