"""Issue 12, Triton side without a server: model names that are paths, bad --gpus/--instances/--max-batch/--preset,
--copy over links leaving the engine set, an atomic repository commit under kill and full-disk failpoints, the
prompt byte limit, and triton-client values refused before any connection. Every refusal is one ``error:`` line
with a non-zero exit, and nothing outside the folders a test names changes. (Refusals by a live server, Triton's
failure counters and timeouts are in test_triton.py, which holds the module's one server.)"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from google.protobuf import text_format
from helpers import assert_one_line_error, run_cli, snapshot
from tritonclient.grpc import model_config_pb2 as mc

from ideogram_trt.core.errors import InputError
from ideogram_trt.core.files import PARTIAL_MARK, TMP_MARK
from ideogram_trt.core.tokenization import MAX_PROMPT_BYTES, MAX_TOKEN_BYTES, PromptTokenizer


@pytest.fixture(scope="module")
def engines(one_graph_engines: Path) -> Path:
    """triton-repo reads only the set's manifest (and --copy its files): one graph at one bucket is enough."""
    return one_graph_engines


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """The folder a test's repository goes in (``work/repo``); the test snapshots all of ``work``."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def repo_args(engines: Path, out: Path, *extra: object) -> list[object]:
    return ["triton-repo", "--engines", engines, "--out", out, *extra]


def ours(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if TMP_MARK in p.name or PARTIAL_MARK in p.name)


# --- 14. model names are names, not paths -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["ABSOLUTE", "../x", "..", ".", "", "a/b", "a/../../x", "a\\b", "a\x00b", ".hidden", "x" * 129, "naïve", "a b"],
)
def test_model_names_that_are_not_folder_names_are_refused(engines: Path, work: Path, capsys, name: str) -> None:
    if name == "ABSOLUTE":
        name = str(work.parent / "elsewhere")
    out = work / "repo"
    before = snapshot(work.parent, engines)  # the parent of --out, and the engine set
    code, stdout, err = run_cli(repo_args(engines, out, "--model-name", name), capsys)
    assert_one_line_error(code, err, f"--model-name {name!r}", "not a path", "e.g. ideogram4")
    assert stdout == "" and snapshot(work.parent, engines) == before and not out.exists()


def test_every_model_name_allowed_stays_inside_out(engines: Path, work: Path, capsys) -> None:
    out = work / "repo"
    for name in ("ideogram4", "a.b-c_d", "x..y", "dash-", "9" * 128):
        code, _, err = run_cli(repo_args(engines, out, "--model-name", name), capsys)
        assert code == 0, err
        assert (out / name / "config.pbtxt").is_file()
    assert sorted(p.name for p in work.iterdir()) == ["repo"]


# --- 11. bad values for triton-repo: one line naming the value -----------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--gpus", "a,b"], ["--gpus 'a,b'", "'a' is not a GPU index", "e.g. 0,1"]),
        (["--gpus", "-1"], ["--gpus '-1'", "'-1' is not a GPU index"]),
        (["--gpus", "0,,1"], ["--gpus '0,,1'", "an empty entry"]),
        (["--gpus", ""], ["--gpus ''", "an empty entry"]),
        (["--gpus", "0,1,"], ["--gpus '0,1,'", "an empty entry"]),
        (["--gpus", "1.5"], ["'1.5' is not a GPU index"]),
        (["--gpus", "\u0663"], ["is not a GPU index"]),  # an Arabic-Indic digit: str.isdigit() says yes
        (["--gpus", "0,0"], ["GPU 0 is listed twice", "--instances"]),
        (["--instances", "0"], ["--instances 0", "give 1 to 64"]),
        (["--instances", "-2"], ["--instances -2", "give 1 to 64"]),
        (["--instances", "65"], ["--instances 65", "give 1 to 64"]),
        (["--instances", "100000"], ["--instances 100000", "give 1 to 64"]),
        (["--max-batch", "0"], ["--max-batch 0", "give 1 to 256"]),
        (["--max-batch", "-1"], ["--max-batch -1"]),
        (["--max-batch", "100000"], ["--max-batch 100000"]),
        (["--preset", "V9_MAGIC"], ["unknown preset 'V9_MAGIC'", "V4_DEFAULT_20"]),
    ],
)
def test_bad_repository_values_are_refused(engines: Path, work: Path, capsys, flags, needles) -> None:
    out = work / "repo"
    before = snapshot(work, engines)
    code, stdout, err = run_cli(repo_args(engines, out, *flags), capsys)
    assert_one_line_error(code, err, *needles)
    assert stdout == "" and snapshot(work, engines) == before and not out.exists()


def test_gpus_that_are_indices_are_accepted(engines: Path, work: Path, capsys) -> None:
    out = work / "repo"
    code, _, err = run_cli(repo_args(engines, out, "--gpus", " 1, 0 ,3", "--instances", "2"), capsys)
    assert code == 0, err
    config = text_format.Parse((out / "ideogram4" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert [(g.count, list(g.gpus)) for g in config.instance_group] == [(2, [1]), (2, [0]), (2, [3])]


def test_the_instance_limit_is_inclusive(engines: Path, work: Path, capsys) -> None:
    out = work / "repo"
    code, _, err = run_cli(repo_args(engines, out, "--instances", "64"), capsys)
    assert code == 0, err
    config = text_format.Parse((out / "ideogram4" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert [g.count for g in config.instance_group] == [64]


# --- 6. --copy and links leaving the engine set --------------------------------------------------------------------


@pytest.fixture
def linked_set(engines: Path, work: Path) -> tuple[Path, Path]:
    """A copy of the engine set (real files) inside ``work``, and a folder outside it with a secret file."""
    import shutil

    copy = work / "set"
    shutil.copytree(engines, copy, symlinks=True)
    outside = work / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "secret.txt").write_text("not part of the engine set")
    (outside / "folder" / "key").write_text("nor this")
    return copy, outside


@pytest.mark.parametrize("kind", ["file", "folder", "nested-file", "relative-dotdot"])
def test_copy_refuses_links_leaving_the_engine_set(linked_set, work: Path, capsys, kind: str) -> None:
    engine_set, outside = linked_set
    if kind == "file":
        link = engine_set / "extra.bin"
        link.symlink_to(outside / "secret.txt")
    elif kind == "folder":
        link = engine_set / "more"
        link.symlink_to(outside / "folder", target_is_directory=True)
    elif kind == "nested-file":
        (engine_set / "deep" / "er").mkdir(parents=True)
        link = engine_set / "deep" / "er" / "x"
        link.symlink_to(outside / "secret.txt")
    else:
        link = engine_set / "up"
        link.symlink_to(Path("..") / "outside" / "secret.txt")
    out = work / "repo"
    before = snapshot(work)
    code, stdout, err = run_cli(repo_args(engine_set, out, "--copy"), capsys)
    assert_one_line_error(code, err, str(link), "a symbolic link to", f"outside {engine_set}", "cp -L")
    assert stdout == "" and snapshot(work) == before and not out.exists()  # no partial copy either


def test_copy_takes_links_to_files_inside_the_engine_set(linked_set, work: Path, capsys) -> None:
    engine_set, _ = linked_set
    plan = next(p for p in engine_set.rglob("*") if p.is_file() and p.suffix in (".onnx", ".data", ".json"))
    (engine_set / "alias").symlink_to(plan.relative_to(engine_set))
    out = work / "repo"
    code, _, err = run_cli(repo_args(engine_set, out, "--copy"), capsys)
    assert code == 0, err
    copied = out / "ideogram4" / "1" / "engines"
    alias = copied / "alias"
    assert alias.is_file() and not alias.is_symlink() and alias.read_bytes() == plan.read_bytes()
    assert not any(p.is_symlink() for p in copied.rglob("*"))
    assert not (out / "ideogram4" / "1" / "engines" / ".ideogram-trt.lock").exists()


# --- commit: staged model folder, atomic config.pbtxt and README.md ----------------------------------------------


@pytest.fixture
def first_repo(engines: Path, work: Path, capsys) -> Path:
    out = work / "repo"
    assert run_cli(repo_args(engines, out, "--model-name", "first"), capsys)[0] == 0
    (out / ".not-ours").mkdir()  # hidden entries without our mark are never touched
    (out / ".x.ideogram-partial-notapid").mkdir()
    return out


def assert_loadable(out: Path, models: list[str]) -> None:
    """Each model parses as Triton's ModelConfig with its model.py, and README lists exactly these models."""
    for name in models:
        config = text_format.Parse((out / name / "config.pbtxt").read_text(), mc.ModelConfig())
        assert config.name == name and (out / name / "1" / "model.py").is_file()
    readme = (out / "README.md").read_text()
    assert f"Models: {', '.join(sorted(models))}." in readme


def test_a_killed_commit_leaves_the_previous_repository_and_the_next_run_cleans_up(
    engines: Path, first_repo: Path, capsys
) -> None:
    out = first_repo
    before = snapshot(out)
    env = {**os.environ, "IDEOGRAM_TRT_FAILPOINT": "kill@second"}
    command = [sys.executable, "-m", "ideogram_trt", *map(str, repo_args(engines, out, "--model-name", "second"))]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == -signal.SIGKILL, result.stderr
    partials = [p for p in out.iterdir() if p.name.startswith(f".second{PARTIAL_MARK}")]
    assert len(partials) == 1 and (partials[0] / "config.pbtxt").is_file()  # killed just before the rename
    assert {k: v for k, v in snapshot(out).items() if f".second{PARTIAL_MARK}" not in k} == before
    assert_loadable(out, ["first"])
    code, _, err = run_cli(repo_args(engines, out, "--model-name", "second"), capsys)
    assert code == 0, err
    assert_loadable(out, ["first", "second"])
    assert ours(out) == [".x.ideogram-partial-notapid"]  # the killed run's folder is gone; no pid, not ours
    assert (out / ".not-ours").is_dir()


def test_a_killed_readme_commit_keeps_a_consistent_repository(engines: Path, first_repo: Path, capsys) -> None:
    out = first_repo
    readme = (out / "README.md").read_bytes()
    env = {**os.environ, "IDEOGRAM_TRT_FAILPOINT": "kill@README.md"}
    command = [sys.executable, "-m", "ideogram_trt", *map(str, repo_args(engines, out, "--model-name", "second"))]
    assert subprocess.run(command, capture_output=True, env=env, check=False).returncode == -signal.SIGKILL
    assert (out / "README.md").read_bytes() == readme  # old README whole; the committed model is complete
    assert (out / "second" / "config.pbtxt").is_file()
    assert run_cli(repo_args(engines, out, "--model-name", "third"), capsys)[0] == 0
    assert_loadable(out, ["first", "second", "third"])
    assert ours(out) == [".x.ideogram-partial-notapid"]


@pytest.mark.parametrize("target", ["README.md", "config.pbtxt"])
def test_a_full_disk_leaves_the_repository_as_it_was(
    engines: Path, first_repo: Path, capsys, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    out = first_repo
    before = snapshot(out, engines)
    monkeypatch.setenv("IDEOGRAM_TRT_FAILPOINT", f"enospc@{target}")
    code, stdout, err = run_cli(repo_args(engines, out, "--model-name", "second"), capsys)
    assert_one_line_error(code, err, os.strerror(errno.ENOSPC), target)
    assert stdout == "" and snapshot(out, engines) == before  # no model folder, no temporary, old README
    monkeypatch.delenv("IDEOGRAM_TRT_FAILPOINT")
    assert run_cli(repo_args(engines, out, "--model-name", "second"), capsys)[0] == 0
    assert_loadable(out, ["first", "second"])


def test_an_existing_model_is_refused_and_kept(engines: Path, first_repo: Path, capsys) -> None:
    before = snapshot(first_repo)
    code, _, err = run_cli(repo_args(engines, first_repo, "--model-name", "first", "--decoupled"), capsys)
    assert_one_line_error(code, err, str(first_repo / "first"), "exists")
    assert snapshot(first_repo) == before


@pytest.mark.parametrize("kind", ["directory", "symlink"])
def test_a_readme_that_is_not_a_file_is_refused(engines: Path, work: Path, capsys, kind: str) -> None:
    out = work / "repo"
    out.mkdir()
    if kind == "directory":
        (out / "README.md").mkdir()
    else:
        (work / "mine.md").write_text("mine")
        (out / "README.md").symlink_to(work / "mine.md")
    before = snapshot(work)
    code, _, err = run_cli(repo_args(engines, out), capsys)
    assert_one_line_error(code, err, str(out / "README.md"), "a directory" if kind == "directory" else "a symbolic")
    assert snapshot(work) == before


# --- 9. the prompt byte limit (shared by the CLI and Triton) -------------------------------------------------------


def test_an_oversized_prompt_is_refused_by_bytes_before_tokenizing(checkpoint) -> None:
    tokenizer = PromptTokenizer.from_dir(checkpoint.tokenizer_dir)
    for prompt in ("x" * (16 << 20), "é" * (MAX_PROMPT_BYTES // 2 + 1), "a" * (MAX_PROMPT_BYTES + 1)):
        start = time.perf_counter()
        with pytest.raises(
            InputError, match=rf"the prompt is {len(prompt.encode())} bytes; .* {MAX_PROMPT_BYTES} bytes"
        ):
            tokenizer.encode(prompt)
        assert time.perf_counter() - start < 0.2
    # Under the byte limit the exact token count decides: the bound is generous, never what refuses a prompt
    # that fits (no token of this vocabulary is longer than MAX_TOKEN_BYTES).
    assert max(len(t.encode()) for t in tokenizer._tokenizer.get_vocab()) <= MAX_TOKEN_BYTES
    with pytest.raises(InputError, match=r"tokens after the chat template; the limit is 2048"):
        tokenizer.encode("a " * (MAX_PROMPT_BYTES // 2))
    assert len(tokenizer.encode("a " * 1000)) < 2048


# --- 11. triton-client values refused before any connection -------------------------------------------------------


@pytest.fixture
def no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    import tritonclient.grpc
    import tritonclient.http

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a client connected before the request was refused")

    monkeypatch.setattr(tritonclient.grpc, "InferenceServerClient", refuse)
    monkeypatch.setattr(tritonclient.http, "InferenceServerClient", refuse)


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--seed", str(2**63)], [f"seed {2**63}", "2**63 - 1"]),
        (["--seed", "-1"], ["seed -1", "from 0"]),
        (["--seed", str(2**63 - 1), "-n", "2"], ["2**63 - 2 for 2 images"]),
        (["-n", str(2**31)], [f"{2**31} images", "limit of 256"]),
        (["-n", "0"], ["num_images must be at least 1, got 0"]),
        (["-n", "-5"], ["got -5"]),
        (["--timeout", "0"], ["--timeout 0", "positive number of seconds"]),
        (["--timeout", "-1"], ["--timeout -1"]),
        (["--timeout", "nan"], ["--timeout nan"]),
        (["--timeout", "inf"], ["--timeout inf"]),
        (["--url", "http://localhost:8000"], ["'http://localhost:8000'", "with --protocol grpc", "host:port"]),
        (["--url", "grpc://localhost:8001", "--protocol", "http"], ["with --protocol http"]),
        (["--url", "https://localhost:8000", "--protocol", "http"], ["TLS is not supported"]),
        (["--url", "localhost"], ["--url 'localhost': not host:port", "e.g. --url localhost:8001"]),
        (["--url", "localhost:0"], ["not host:port"]),
        (["--url", "localhost:99999"], ["not host:port"]),
        (["--url", "http://localhost:8000/v2", "--protocol", "http"], ["not host:port"]),
        (["--url", ""], ["--url ''"]),
        (["--height", "256"], ["give both --height and --width"]),
        (["--width", "256"], ["give both --height and --width"]),
        (["--height", str(2**31), "--width", "256"], [f"--height {2**31}", "positive number of pixels"]),
        (["--height", "0", "--width", "256"], ["--height 0"]),
        (["--stream", "--protocol", "http"], ["--stream needs --protocol grpc"]),
        (["-o", "/dev/null"], ["/dev/null: a device", "regular file"]),
        (["-o", "DIR"], ["a directory", "out.png"]),
        (["-o", "DIR", "-n", "2"], ["a directory"]),
    ],
)
def test_bad_client_values_are_refused_before_connecting(
    work: Path, capsys, monkeypatch: pytest.MonkeyPatch, no_connection, flags, needles
) -> None:
    monkeypatch.chdir(work)
    (work / "DIR").mkdir()
    before = snapshot(work)
    code, stdout, err = run_cli(["triton-client", '{"subject":"a fox"}', *flags], capsys)
    assert_one_line_error(code, err, *needles)
    assert stdout == "" and snapshot(work) == before


def test_a_prompt_that_is_not_utf8_is_refused_before_connecting(work: Path, capsys, no_connection) -> None:
    bad = b"caf\xe9".decode("utf-8", "surrogateescape")  # how Python hands over non-UTF-8 command-line bytes
    code, _, err = run_cli(["triton-client", bad, "-o", work / "x.png"], capsys)
    assert_one_line_error(code, err, "not valid UTF-8", "iconv")
    assert list(work.iterdir()) == []


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket closes


@pytest.mark.parametrize("mode", [["--protocol", "grpc"], ["--protocol", "http"], ["--stream"]])
def test_no_server_listening_is_one_line_and_fast(work: Path, capsys, mode: list[str]) -> None:
    port = closed_port()
    url = f"127.0.0.1:{port}"
    before = snapshot(work)
    start = time.perf_counter()
    code, _, err = run_cli(["triton-client", "a fox", "--url", url, *mode, "-o", work / "fox.png"], capsys)
    elapsed = time.perf_counter() - start
    assert_one_line_error(code, err, f"no Triton server answers at {url}", "fix --url")
    assert elapsed < 5, elapsed
    assert snapshot(work) == before


# --- 11. the Triton model (server side): every input checked before any engine runs --------------------------------


class FakePbUtils:
    """Just what TritonPythonModel.execute uses of Triton's ``triton_python_backend_utils``."""

    class Tensor:
        def __init__(self, name: str, array) -> None:  # type: ignore[no-untyped-def]
            self._name, self.array = name, array

        def name(self) -> str:
            return self._name

        def as_numpy(self):  # type: ignore[no-untyped-def]
            return self.array

    class TritonError:
        def __init__(self, message: str) -> None:
            self.message = message

    class InferenceResponse:
        def __init__(self, output_tensors=None, error=None) -> None:  # type: ignore[no-untyped-def]
            self.output_tensors, self.error = output_tensors, error

    @staticmethod
    def get_input_tensor_by_name(request: FakeRequest, name: str):  # type: ignore[no-untyped-def]
        return next((t for t in request.inputs() if t.name() == name), None)


class FakeRequest:
    """A request as the Python backend hands it over: its input tensors, and a response sender."""

    def __init__(self, inputs: dict[str, FakePbUtils.Tensor]) -> None:
        self._inputs = [FakePbUtils.Tensor(name, t.array) for name, t in inputs.items()]
        self.sender = None

    def inputs(self) -> list[FakePbUtils.Tensor]:
        return self._inputs

    def get_response_sender(self):  # type: ignore[no-untyped-def]
        return self.sender


class EnginesMustNotRun:
    """A pipeline whose checks are real (buckets 256x256 and 256x384, presets, prompt size) and whose engines fail
    the test if they run."""

    from ideogram_trt.core.buckets import Bucket

    class Manifest:
        max_text_tokens = 2048

    class Tokenizer:
        @staticmethod
        def check_size(size: int, max_tokens: int) -> None:
            from ideogram_trt.core.tokenization import check_prompt_size

            check_prompt_size(size, max_tokens)

    manifest, tokenizer = Manifest(), Tokenizer()

    def resolve_bucket(self, height: int | None, width: int | None) -> object:
        if (height, width) not in ((None, None), (256, 256), (256, 384)):
            raise InputError(f"{height}x{width} is not a bucket of this engine set")
        return self.Bucket(256, 256)

    def sampling_plan(self, bucket: object, preset: str | None) -> object:
        from ideogram_trt.core.schedule import get_preset

        return get_preset(preset or "V4_DEFAULT_20")

    def step_reports(self, plan: object, prompts: int, num_images: int) -> int:
        return 8

    def lora_feeds(self, loras: list) -> None:
        """The adapter check of a LoRA-ready set whose adapters folder holds ``style`` only."""
        for name, _ in loras:
            if name != "style":
                raise InputError(f"unknown LoRA adapter {name!r}: the adapters folder has style")

    def __call__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("an engine ran for a request that should have been refused")


def tensor(value: object, dtype) -> FakePbUtils.Tensor:  # type: ignore[no-untyped-def]
    import numpy as np

    return FakePbUtils.Tensor("x", np.array(value if isinstance(value, list) else [value], dtype=dtype))


@pytest.fixture
def triton_model(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from ideogram_trt.triton import model as triton_model

    monkeypatch.setattr(triton_model, "pb_utils", FakePbUtils)
    instance = triton_model.TritonPythonModel()
    instance.pipe, instance.defaults, instance.max_images, instance.decoupled = EnginesMustNotRun(), {}, 2, False
    return triton_model, instance


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "input 'prompt' is required"),
        ({"prompt": (b"a cat", object), "bogus": (1, "int32")}, "input 'bogus' is not an input of this model"),
        ({"prompt": (b"caf\xe9", object)}, "input 'prompt' is not UTF-8 text (bad byte at offset 3)"),
        ({"prompt": (b"x" * (MAX_PROMPT_BYTES + 1), object)}, f"the prompt is {MAX_PROMPT_BYTES + 1} bytes"),
        ({"prompt": ([b"a", b"b"], object)}, "input 'prompt' must hold one value, got 2"),
        ({"prompt": (b"a cat", object), "seed": (-1, "int64")}, "seed -1: give a whole number from 0"),
        ({"prompt": (b"a cat", object), "seed": (2**63 - 1, "int64"), "num_images": (2, "int32")}, "2**63 - 2"),
        ({"prompt": (b"a cat", object), "num_images": (0, "int32")}, "num_images must be at least 1, got 0"),
        ({"prompt": (b"a cat", object), "num_images": (-7, "int32")}, "got -7"),
        ({"prompt": (b"a cat", object), "num_images": (3, "int32")}, "above this model's limit of 2"),
        ({"prompt": (b"a cat", object), "height": (256, "int32")}, "input 'height' was sent without 'width'"),
        ({"prompt": (b"a cat", object), "width": (256, "int32")}, "input 'width' was sent without 'height'"),
        ({"prompt": (b"a cat", object), "height": (-256, "int32"), "width": (256, "int32")}, "-256x256"),
        ({"prompt": (b"a cat", object), "preset": (b"\xff", object)}, "input 'preset' is not UTF-8 text"),
        ({"prompt": (b"a cat", object), "preset": (b"V9", object)}, "unknown preset 'V9'"),
    ],
)
@pytest.mark.parametrize("decoupled", [False, True])
def test_the_model_refuses_bad_inputs_before_any_engine_runs(triton_model, inputs, message, decoupled) -> None:
    module, instance = triton_model
    instance.decoupled = decoupled
    request = FakeRequest({name: tensor(value, dtype) for name, (value, dtype) in inputs.items()})
    with pytest.raises(module.RequestError) as caught:
        instance.execute([request])
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_several_requests_in_one_call_get_their_own_errors(triton_model) -> None:
    _, instance = triton_model
    good = FakeRequest({"prompt": tensor(b"a cat", object)})
    bad = FakeRequest({"prompt": tensor(b"a cat", object), "seed": tensor(-1, "int64")})
    ran: list[object] = []
    instance._run = lambda parsed, on_step=None: ran.append(parsed) or (None, [])
    instance._images = lambda result, pngs: []
    responses = instance.execute([good, bad])
    assert len(ran) == 1 and responses[0].error is None and "seed -1" in responses[1].error.message
