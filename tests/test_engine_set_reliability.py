"""Issue 12, engine sets: clean-up never leaves the set or follows a link, every byte a set serves is hashed and
the hash check cannot be skipped, manifest paths stay inside the set, copies refuse links that leave their source,
`inspect` refuses what loading refuses, commits survive kill -9 and ENOSPC, one build at a time, GPU identity.

Every refusal is asserted as one `error:` line with a non-zero exit, and the folders around the ones named are
snapshotted before and after to prove nothing there changed. Engine sets here are ONNX Runtime sets over the
tiny checkpoint (fp32 graphs, bf16 recipe); `tests/test_engines.py` does the same faults for TensorRT-RTX plans.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ideogram_trt.core.digest import CACHE_ENV, file_digest
from ideogram_trt.core.files import FAILPOINT_ENV, LOCK_FILE, FolderLock
from ideogram_trt.core.gpu import GpuInfo
from ideogram_trt.core.manifest import Flavor, Manifest, RuntimeEnv, check_engine_set
from tests.helpers import assert_one_line_error, run_cli, snapshot

PROMPT = '{"subject":"a red fox"}'


def build_argv(onnx: Path, out: Path, *extra: str) -> list[str]:
    return ["build-engines", "--onnx", str(onnx), "--out", str(out), "--recipe", "bf16", "--flavor", "onnxruntime",
            "--buckets", "256x256", *extra]  # fmt: skip


def cli_subprocess(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ideogram_trt", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
    )


def our_leftovers(*folders: Path) -> list[Path]:
    """Temporaries and staging folders of ours (core.files marks) anywhere under ``folders``."""
    found = []
    for folder in folders:
        if folder.is_dir():
            found += [p for p in folder.rglob("*") if ".ideogram-tmp-" in p.name or ".ideogram-partial-" in p.name]
    return found


def edit_manifest(root: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path = root / "manifest.json"
    body = json.loads(path.read_text())
    edit(body)
    path.write_text(json.dumps(body))


@pytest.fixture(scope="module")
def export_dir(bf16_engines: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session set's export (bf16 recipe, fp32 graphs, all four components)."""
    out = tmp_path_factory.mktemp("export") / "onnx"
    shutil.copytree(bf16_engines / "onnx", out)
    return out


@pytest.fixture(scope="module")
def base_set(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ideogram_trt.cli import main

    out = tmp_path_factory.mktemp("sets") / "base"
    assert main(build_argv(export_dir, out)) == 0
    return out


@pytest.fixture
def engine_set(base_set: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "set"
    shutil.copytree(base_set, copy, symlinks=True)
    return copy


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A user's folder outside every folder a command is given, full of files named like ours."""
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "dit_cond.0123456789abcdef.onnx").write_bytes(b"user data 1")
    (folder / "vae_decoder.0123456789abcdef.onnx.data").write_bytes(b"user data 2")
    (folder / "notes.txt").write_text("keep me")
    (folder / "tokenizer.0123456789abcdef").mkdir()
    (folder / "tokenizer.0123456789abcdef" / "tokenizer.json").write_text("{}")
    return folder


# --- 1: clean-up never deletes outside the set or through a link -----------------------------------------------


@pytest.mark.parametrize("folder", ["graphs", "plans", "onnx", "sampler", "timing-cache"])
def test_a_subfolder_that_is_a_link_is_refused(
    engine_set: Path, export_dir: Path, victim: Path, folder: str, capsys
) -> None:
    """The set's own subfolders may not be links: a rebuild would otherwise clean another folder."""
    if (engine_set / folder).exists():
        shutil.rmtree(engine_set / folder)
    (engine_set / folder).symlink_to(victim, target_is_directory=True)
    before = snapshot(victim, export_dir)
    manifest_before = (engine_set / "manifest.json").read_bytes()
    code, _, err = run_cli([*build_argv(export_dir, engine_set), "--buckets", "256x384"], capsys)
    assert_one_line_error(code, err, f"{engine_set / folder}: a symbolic link", "remove it")
    assert snapshot(victim, export_dir) == before
    assert (engine_set / "manifest.json").read_bytes() == manifest_before


def test_cleanup_deletes_only_regular_files_it_wrote(engine_set: Path, export_dir: Path, victim: Path) -> None:
    """Links inside graphs/ named like our graphs, a linked tokenizer folder, and a user's own files in the set
    all survive a rebuild that drops every old graph; the victim folder is untouched."""
    from ideogram_trt.cli import main

    graphs = engine_set / "graphs"
    (graphs / "dit_uncond.fedcba9876543210.onnx").symlink_to(victim / "dit_cond.0123456789abcdef.onnx")
    (graphs / "vae_decoder.fedcba9876543210.onnx.data").symlink_to(victim / "vae_decoder.0123456789abcdef.onnx.data")
    (engine_set / "tokenizer.fedcba9876543210").symlink_to(victim / "tokenizer.0123456789abcdef")
    (graphs / "my-notes.txt").write_text("mine")
    (engine_set / "README.txt").write_text("mine too")
    old = Manifest.load(engine_set)
    before = snapshot(victim, export_dir)
    assert main([*build_argv(export_dir, engine_set), "--buckets", "256x384"]) == 0
    assert snapshot(victim, export_dir) == before
    new = Manifest.load(engine_set)
    old_files = {e.file for e in old.engines.values()} - {e.file for e in new.engines.values()}
    assert old_files and not any((engine_set / f).exists() for f in old_files)  # our own stale graphs went
    assert (graphs / "dit_uncond.fedcba9876543210.onnx").is_symlink()
    assert (graphs / "vae_decoder.fedcba9876543210.onnx.data").is_symlink()
    assert (engine_set / "tokenizer.fedcba9876543210").is_symlink()
    assert (graphs / "my-notes.txt").read_text() == "mine" and (engine_set / "README.txt").read_text() == "mine too"
    assert check_engine_set(engine_set, new, RuntimeEnv.detect()) == []


# --- 3 + 4: every byte is hashed, and the hash check cannot be skipped ------------------------------------------


@pytest.fixture(scope="module")
def external_export(export_dir: Path, tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The export with its dit_uncond and vae_decoder re-exported with external data."""
    from ideogram_trt.cli import main

    out = tmp_path_factory.mktemp("external") / "onnx"
    shutil.copytree(export_dir, out)
    argv = ["export", "--model", str(tiny_dir), "--out", str(out), "--recipe", "bf16", "--dtype", "fp32"]
    assert main([*argv, "--components", "dit_uncond,vae_decoder", "--external-data", "always"]) == 0
    return out


@pytest.fixture
def external_set(external_export: Path, tmp_path: Path) -> Path:
    from ideogram_trt.cli import main

    out = tmp_path / "external-set"
    assert main(build_argv(external_export, out)) == 0
    return out


def flip_bytes(path: Path, keep_times: bool) -> None:
    """Change 8 bytes in the middle of ``path`` in place, restoring atime and mtime when asked (`touch -r`)."""
    info = path.stat()
    with path.open("r+b") as handle:
        handle.seek(info.st_size // 2)
        chunk = handle.read(8)
        handle.seek(info.st_size // 2)
        handle.write(bytes(b ^ 0x5A for b in chunk))
    if keep_times:
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def served_files(root: Path) -> dict[str, Path]:
    manifest = Manifest.load(root)
    files = {"plan or graph": root / manifest.engines["dit_cond"].file}
    data = manifest.engines["dit_uncond"].external_data
    if data is not None:
        files["external data"] = root / data.file
    files["tokenizer.json"] = root / manifest.tokenizer / "tokenizer.json"
    files["tokenizer_config.json"] = root / manifest.tokenizer / "tokenizer_config.json"
    return files


@pytest.mark.parametrize("keep_times", [False, True], ids=["plain-write", "mtime-restored"])
@pytest.mark.parametrize("which", ["plan or graph", "external data", "tokenizer.json", "tokenizer_config.json"])
def test_every_served_byte_is_checked(
    external_set: Path, external_export: Path, which: str, keep_times: bool, capsys, tmp_path: Path
) -> None:
    """8 bytes changed in any file the set serves — with the mtime put back, after the digest cache has seen
    the file — and inspect, generate and a rebuild all notice."""
    path = served_files(external_set)[which]
    assert main_ok(["inspect", str(external_set)], capsys)  # fills the digest cache with the good bytes
    flip_bytes(path, keep_times)
    code, out, _ = run_cli(["inspect", str(external_set)], capsys)
    assert code == 1 and f"{path}: changed since it was built" in out
    around = snapshot(tmp_path / "out")
    code, _, err = run_cli(["generate", PROMPT, "--engines", external_set, "-o", tmp_path / "out" / "x.png"], capsys)
    assert_one_line_error(code, err, f"{path}: changed since it was built")
    assert snapshot(tmp_path / "out") == around
    code, out, err = run_cli(build_argv(external_export, external_set), capsys)
    assert code == 0, err
    assert ("building (" in out + err) != which.startswith("tokenizer")  # graphs rebuilt; a tokenizer re-copied
    assert main_ok(["inspect", str(external_set)], capsys)  # the rebuild restored what the manifest names


def main_ok(args: list[str], capsys) -> bool:  # type: ignore[no-untyped-def]
    code, out, err = run_cli(args, capsys)
    assert code == 0, out + err
    return True


def test_an_edited_export_is_refused(external_export: Path, tmp_path: Path, capsys) -> None:
    """The graph and external data an --onnx build reads are checked against the export's own sidecar."""
    export = tmp_path / "onnx"
    shutil.copytree(external_export, export)
    flip_bytes(export / "dit_uncond.onnx.data", keep_times=True)
    out = tmp_path / "new-set"
    code, _, err = run_cli(build_argv(export, out), capsys)
    assert_one_line_error(code, err, "dit_uncond.onnx.data: changed since it was exported")
    assert not out.exists()  # a failed first build leaves no folder behind


def test_digest_cache_of_another_user_is_ignored(engine_set: Path, tmp_path: Path, monkeypatch) -> None:
    """A cache entry vouches only for the exact inode, size, mtime and ctime it saw, and only in a cache file this
    user owns: a forged entry for a changed graph in another user's cache file is ignored."""
    cache_file = tmp_path / "cache" / "file-digests.json"
    monkeypatch.setenv(CACHE_ENV, str(cache_file.parent))
    entry = Manifest.load(engine_set).engines["vae_decoder"]
    graph = engine_set / entry.file
    assert file_digest(graph) == entry.sha256
    flip_bytes(graph, keep_times=True)
    stat = graph.stat()
    key = f"{graph.resolve()}|{stat.st_dev}|{stat.st_ino}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}"
    cache_file.write_text(json.dumps({key: entry.sha256}))  # the forgery: the old hash for the new bytes
    os.chown(cache_file, 65534, 65534)
    assert file_digest(graph) != entry.sha256


# --- 5: manifest paths stay inside the set ---------------------------------------------------------------------


def _set_file(body: dict, value: str) -> None:
    body["engines"]["vae_decoder"]["file"] = value


def _passwd_with_hash(body: dict) -> None:
    _set_file(body, "/etc/passwd")
    body["engines"]["vae_decoder"]["sha256"] = file_digest(Path("/etc/passwd"))
    body["engines"]["vae_decoder"]["bytes"] = Path("/etc/passwd").stat().st_size


ESCAPES = {
    "absolute with a matching hash": (_passwd_with_hash, "must be a relative path"),
    "dot-dot": (lambda b: _set_file(b, "../outside.onnx"), "without '..'"),
    "dot-dot inside": (lambda b: _set_file(b, "graphs/../../outside.onnx"), "without '..'"),
    "through a link": (lambda b: _set_file(b, "graphs/link.onnx"), "through a symbolic link"),
    "tokenizer absolute": (lambda b: b.update(tokenizer="/etc"), "must be a relative path"),
    "tokenizer dot-dot": (lambda b: b.update(tokenizer="../victim"), "without '..'"),
    "tokenizer file dot-dot": (
        lambda b: b["tokenizer_files"].append({"file": "../../victim/notes.txt", "sha256": "0", "bytes": 1}),
        "without '..'",
    ),
    "external data absolute": (
        lambda b: b["engines"]["dit_cond"].update(external_data={"file": "/etc/hostname", "sha256": "0", "bytes": 1}),
        "must be a relative path",
    ),
    "empty path": (lambda b: _set_file(b, ""), "not a relative path"),
}


@pytest.mark.parametrize("case", sorted(ESCAPES))
@pytest.mark.parametrize("command", ["inspect", "generate", "triton-repo"])
def test_manifest_paths_must_stay_inside(
    engine_set: Path, victim: Path, tmp_path: Path, case: str, command: str, capsys
) -> None:
    edit, needle = ESCAPES[case]
    (engine_set / "graphs" / "link.onnx").symlink_to(victim / "dit_cond.0123456789abcdef.onnx")
    edit_manifest(engine_set, edit)
    args = {
        "inspect": ["inspect", engine_set],
        "generate": ["generate", PROMPT, "--engines", engine_set, "-o", tmp_path / "out" / "x.png"],
        "triton-repo": ["triton-repo", "--engines", engine_set, "--out", tmp_path / "out" / "repo", "--copy"],
    }[command]
    before = snapshot(victim, tmp_path / "out", engine_set)
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "manifest.json", needle)
    assert snapshot(victim, tmp_path / "out", engine_set) == before


# --- 11 + 12: manifest fields of the wrong type, and inspect refusing what loading refuses -----------------------


FIELDS = {
    "engines null": (lambda b: b.update(engines=None), "'engines' must be dict"),
    "engines empty": (lambda b: b.update(engines={}), "'engines' must name at least one engine"),
    "engine not an object": (lambda b: b["engines"].update(vae_decoder=5), "'engines.vae_decoder' must be an object"),
    "max_batch 0": (lambda b: b.update(max_batch=0), "'max_batch' must be in [1, 64]"),
    "max_batch string": (lambda b: b.update(max_batch="4"), "'max_batch' must be int"),
    "max_batch bool": (lambda b: b.update(max_batch=True), "'max_batch' must be int"),
    "max_text_tokens huge": (lambda b: b.update(max_text_tokens=10**8), "'max_text_tokens' must be in [1, 2048]"),
    "latent_channels string": (
        lambda b: b["model"].update(latent_channels="abc"),
        "'model.latent_channels' must be int",
    ),
    "bad bucket": (lambda b: b.update(buckets=["256x256", "abc"]), "'buckets' holds 'abc'"),
    "no buckets": (lambda b: b.update(buckets=[]), "'buckets' must name at least one bucket"),
    "profile of another bucket": (
        lambda b: b["engines"]["vae_decoder"]["profiles"][0].update(bucket="512x512"),
        "'engines.vae_decoder.profiles.0.bucket' names '512x512'",
    ),
    "profile min above max": (
        lambda b: b["engines"]["vae_decoder"]["profiles"][0]["shapes"]["latents"].update(min=[9, 9, 9]),
        "min <= opt <= max",
    ),
    "missing field": (lambda b: b.pop("recipe"), "'recipe' is missing"),
    "missing engine field": (lambda b: b["engines"]["dit_cond"].pop("sha256"), "'engines.dit_cond.sha256' is missing"),
    "unknown field": (lambda b: b.update(surprise=1), "'surprise' is not a manifest field"),
    "rope section": (lambda b: b["model"]["rope"].update(mrope_section=[1, 2]), "'model.rope.mrope_section'"),
    "non-finite rope": (lambda b: b["model"]["rope"]["inv_freq"].__setitem__(0, float("nan")), "finite numbers"),
    "old schema": (lambda b: b.update(schema=1), "manifest schema 1, this ideogram-trt reads 2 and 3"),
    "flavor": (lambda b: b.update(flavor="tensorflow"), "'flavor' must be one of"),
}


@pytest.mark.parametrize("case", sorted(FIELDS))
def test_malformed_manifest_fields_are_named(engine_set: Path, tmp_path: Path, case: str, capsys) -> None:
    edit, needle = FIELDS[case]
    edit_manifest(engine_set, edit)
    for args in (["inspect", engine_set], ["generate", PROMPT, "--engines", engine_set, "-o", tmp_path / "x.png"]):
        code, _, err = run_cli(args, capsys)
        assert_one_line_error(code, err, needle)
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("garbage", [b"", b"\xff\xfe not utf-8", b"[1, 2]", b'{"schema": 2'])
def test_unreadable_manifest_is_one_line(engine_set: Path, garbage: bytes, capsys) -> None:
    (engine_set / "manifest.json").write_bytes(garbage)
    code, _, err = run_cli(["inspect", engine_set], capsys)
    assert_one_line_error(code, err, "manifest.json", "rebuild")


def _rehash(root: Path, relative: str) -> None:
    """Make the manifest agree with a file we changed on purpose, so only the structure check can object."""
    manifest = json.loads((root / "manifest.json").read_text())
    tokenizer = manifest["tokenizer"]
    for record in manifest["tokenizer_files"]:
        if f"{tokenizer}/{record['file']}" == relative:
            record["sha256"] = file_digest(root / relative)
            record["bytes"] = (root / relative).stat().st_size
    (root / "manifest.json").write_text(json.dumps(manifest))


def _drop_profile(body: dict) -> None:
    body["buckets"].append("256x384")  # a bucket the set claims but that no engine has a profile for


def _drop_engine(body: dict) -> None:
    body["engines"].pop("vae_decoder")


STRUCTURE = {
    "tokenizer.json garbage": ("tokenizer.json", "the tokenizer does not load"),
    "tokenizer_config not JSON": ("tokenizer_config.json", "the tokenizer does not load"),
    "bucket without profile": (_drop_profile, "bucket 256x384 has no"),
    "engine missing": (_drop_engine, "no vae_decoder engine"),
    "data file missing": ("data", "missing (engine"),
}


@pytest.mark.parametrize("case", sorted(STRUCTURE))
def test_inspect_refuses_what_loading_refuses(
    engine_set: Path, external_set: Path, tmp_path: Path, case: str, capsys
) -> None:
    change, needle = STRUCTURE[case]
    root = engine_set
    if change == "data":
        root = external_set
        data = Manifest.load(root).engines["dit_uncond"].external_data
        assert data is not None
        (root / data.file).unlink()
    elif isinstance(change, str):
        manifest = Manifest.load(root)
        relative = f"{manifest.tokenizer}/{change}"
        (root / relative).write_bytes(b"\xff not json {")
        _rehash(root, relative)
    else:
        edit_manifest(root, change)
    code, out, _ = run_cli(["inspect", root], capsys)
    assert code == 1 and needle in out, out
    code, _, err = run_cli(["generate", PROMPT, "--engines", root, "-o", tmp_path / "x.png"], capsys)
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "x.png").exists()


# --- 6: copies refuse links that leave their source --------------------------------------------------------------


@pytest.mark.parametrize("link", ["file outside", "folder outside", "file inside the checkpoint"])
def test_export_refuses_tokenizer_links_out_of_the_checkpoint(
    tiny_dir: Path, tmp_path: Path, link: str, capsys
) -> None:
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(tiny_dir, checkpoint)
    outside = tmp_path / "outside"
    shutil.copytree(tiny_dir / "tokenizer", outside)
    tokenizer = checkpoint / "tokenizer"
    if link == "file outside":
        (tokenizer / "tokenizer.json").unlink()
        (tokenizer / "tokenizer.json").symlink_to(outside / "tokenizer.json")
    elif link == "folder outside":
        (tokenizer / "extra").symlink_to(outside, target_is_directory=True)
    else:  # inside the folder the user named: allowed, copied by content
        (checkpoint / "tokenizer.json.real").write_bytes((tokenizer / "tokenizer.json").read_bytes())
        (tokenizer / "tokenizer.json").unlink()
        (tokenizer / "tokenizer.json").symlink_to(checkpoint / "tokenizer.json.real")
    out = tmp_path / "onnx"
    before = snapshot(outside, checkpoint)
    args = ["export", "--model", checkpoint, "--out", out, "--recipe", "bf16", "--dtype", "fp32"]
    code, _, err = run_cli([*args, "--components", "text_encoder"], capsys)
    if link == "file inside the checkpoint":
        assert code == 0, err
        assert not (out / "tokenizer" / "tokenizer.json").is_symlink()
        assert (out / "tokenizer" / "tokenizer.json").read_bytes() == (outside / "tokenizer.json").read_bytes()
    else:
        assert_one_line_error(code, err, "symbolic link", "outside" if link == "file outside" else "folder")
        assert not out.exists() and not our_leftovers(tmp_path)
    assert snapshot(outside, checkpoint) == before


def test_build_refuses_tokenizer_links_out_of_the_export(export_dir: Path, tmp_path: Path, capsys) -> None:
    export = tmp_path / "onnx"
    shutil.copytree(export_dir, export)
    outside = tmp_path / "secret.json"
    outside.write_text('{"not": "yours"}')
    (export / "tokenizer" / "special_tokens_map.json").symlink_to(outside)
    out = tmp_path / "set"
    code, _, err = run_cli(build_argv(export, out), capsys)
    assert_one_line_error(code, err, "special_tokens_map.json: a symbolic link", "outside")
    assert not out.exists()


# --- 8: sizes are bounded ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--max-text-tokens", "100000000", "must be in [1, 2048]"),
        ("--max-text-tokens", "2049", "must be in [1, 2048]"),
        ("--max-text-tokens", "0", "must be in [1, 2048]"),
        ("--max-batch", "0", "must be in [1, 64]"),
        ("--max-batch", "1000000", "must be in [1, 64]"),
    ],
)
def test_build_sizes_are_bounded(export_dir: Path, tmp_path: Path, flag: str, value: str, needle: str, capsys):
    out = tmp_path / "set"
    code, _, err = run_cli([*build_argv(export_dir, out), flag, value], capsys)
    assert_one_line_error(code, err, flag, needle)
    assert not out.exists()


# --- 15: kill -9 and ENOSPC during every commit; nothing of ours survives the next run ---------------------------


COMMITS = ["manifest.json", "*.onnx", "tokenizer.*"]


@pytest.mark.parametrize("action", ["kill", "enospc"])
@pytest.mark.parametrize("pattern", COMMITS)
def test_a_failed_commit_keeps_the_previous_set(
    engine_set: Path, export_dir: Path, tmp_path: Path, action: str, pattern: str
) -> None:
    """A rebuild for other buckets (every graph, the tokenizer and the manifest are committed again) fails at
    one commit; the previous set still loads and checks clean, and the next run leaves none of our partials."""
    before = (engine_set / "manifest.json").read_bytes()
    if pattern == "tokenizer.*":  # make the tokenizer change, so it is committed again
        tokenizer = export_dir.parent / "onnx-tok"
        shutil.copytree(export_dir, tokenizer)
        (tokenizer / "tokenizer" / "extra.txt").write_text("x")
        source = tokenizer
    else:
        source = export_dir
    argv = [*build_argv(source, engine_set), "--buckets", "256x384"]
    result = cli_subprocess(argv, **{FAILPOINT_ENV: f"{action}@{pattern}"})
    if action == "kill":
        assert result.returncode == -signal.SIGKILL, result.stderr
    else:
        assert result.returncode == 2 and "No space left on device" in result.stderr, result.stderr
        assert_one_line_error(result.returncode, result.stderr)
    assert (engine_set / "manifest.json").read_bytes() == before
    manifest = Manifest.load(engine_set)
    assert check_engine_set(engine_set, manifest, RuntimeEnv.detect()) == []
    if action == "enospc":
        assert not our_leftovers(engine_set)  # cleaned on the way out
    result = cli_subprocess(argv)
    assert result.returncode == 0, result.stderr
    assert not our_leftovers(engine_set)
    if pattern == "tokenizer.*":
        shutil.rmtree(source)


def test_a_failed_first_build_leaves_no_folder(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "new" / "set"
    argv = ["build-engines", "--model", tiny_dir, "--out", out, "--flavor", "onnxruntime", "--recipe", "fp8"]
    code, _, err = run_cli(argv, capsys)  # fp8 without a calibration file
    assert_one_line_error(code, err, "--calibration")
    assert not out.exists()


def test_a_killed_export_leaves_nothing_after_the_next_run(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "onnx"
    argv = ["export", "--model", tiny_dir, "--out", out, "--recipe", "bf16", "--dtype", "fp32"]
    argv += ["--components", "vae_decoder"]
    result = cli_subprocess(argv, **{FAILPOINT_ENV: "kill@export.json"})
    assert result.returncode == -signal.SIGKILL
    assert cli_subprocess(argv).returncode == 0
    assert not our_leftovers(tmp_path)
    assert json.loads((out / "export.json").read_text())["graphs"] == {"vae_decoder": "vae_decoder.json"}


# --- 17: one build at a time --------------------------------------------------------------------------------------


def test_a_second_build_is_refused_naming_the_holder(engine_set: Path, export_dir: Path, capsys) -> None:
    before = snapshot(engine_set)
    with FolderLock(engine_set, "build-engines"):
        code, _, err = run_cli([*build_argv(export_dir, engine_set), "--buckets", "256x384"], capsys)
        assert_one_line_error(code, err, "another build-engines is writing here", f"pid {os.getpid()}")
    assert snapshot(engine_set) == before
    code, _, err = run_cli([*build_argv(export_dir, engine_set), "--buckets", "256x384"], capsys)
    assert code == 0, err


def test_a_killed_holder_releases_the_lock(engine_set: Path, export_dir: Path, capsys) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from ideogram_trt.core.files import "
         "FolderLock; FolderLock(Path(sys.argv[1])).__enter__(); print('held', flush=True); time.sleep(60)",
         str(engine_set)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    code, _, err = run_cli([*build_argv(export_dir, engine_set), "--buckets", "256x384"], capsys)
    assert_one_line_error(code, err, f"pid {holder.pid}")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    code, _, err = run_cli([*build_argv(export_dir, engine_set), "--buckets", "256x384"], capsys)
    assert code == 0, err
    assert (engine_set / LOCK_FILE).read_bytes() == b""  # released: no holder recorded


def test_concurrent_builds_one_wins_one_is_refused(engine_set: Path, export_dir: Path) -> None:
    argv = [sys.executable, "-m", "ideogram_trt", *map(str, build_argv(export_dir, engine_set))]
    stall = {**os.environ, FAILPOINT_ENV: "stall@manifest.json"}  # the first holds the lock 5 s longer
    first = subprocess.Popen([*argv, "--buckets", "256x384"], stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, env=stall)  # fmt: skip
    deadline = time.monotonic() + 60
    while not (engine_set / LOCK_FILE).read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)
    second = subprocess.run([*argv, "--buckets", "256x256,256x384"], capture_output=True, text=True, timeout=600)
    first_err = first.communicate(timeout=600)[1]
    results = sorted([(first.returncode, first_err), (second.returncode, second.stderr)])
    assert results[0][0] == 0 and results[1][0] == 2, results
    assert "another build-engines is writing here" in results[1][1]
    assert Manifest.load(engine_set).buckets in (["256x384"], ["256x256", "256x384"])


# --- 19: GPU identity ---------------------------------------------------------------------------------------------


def _as_flavor(engine_set: Path, flavor: Flavor, gpu: str | None, capabilities: list[str]) -> Manifest:
    edit_manifest(
        engine_set,
        lambda b: b.update(
            flavor=flavor.value, gpu=gpu, compute_capabilities=capabilities, runtime_version="10.13.0.35"
        ),
    )
    return Manifest.load(engine_set)


def _gpu_problems(engine_set: Path, manifest: Manifest, env: RuntimeEnv, **kwargs: bool) -> list[str]:
    return [p for p in check_engine_set(engine_set, manifest, env, verify_files=False, **kwargs) if "GPU" in p]


def env_with(*gpus: tuple[str, str], version: str = "10.13.0.35") -> RuntimeEnv:
    """A described machine (named as simulated): datacenter TensorRT and TensorRT-RTX at ``version``."""
    return RuntimeEnv(
        {Flavor.TENSORRT: version, Flavor.TENSORRT_RTX: version, Flavor.ONNXRUNTIME: "1"},
        [GpuInfo(i, f"{name} (simulated)", cc, 1) for i, (name, cc) in enumerate(gpus)],
    )


def test_datacenter_plans_need_the_gpu_model_they_were_built_on(engine_set: Path) -> None:
    manifest = _as_flavor(engine_set, Flavor.TENSORRT, "NVIDIA H100 80GB HBM3 (simulated)", ["9.0"])
    assert _gpu_problems(engine_set, manifest, env_with(("NVIDIA H100 80GB HBM3", "9.0"))) == []
    h200 = env_with(("NVIDIA H200", "9.0"))
    (problem,) = _gpu_problems(engine_set, manifest, h200)
    assert "NVIDIA H200 (simulated)" in problem and "built on NVIDIA H100 80GB HBM3" in problem
    assert "--allow-other-gpu" in problem
    assert _gpu_problems(engine_set, manifest, h200, allow_other_gpu=True) == []
    mixed = env_with(("NVIDIA H100 80GB HBM3", "9.0"), ("NVIDIA H200", "9.0"))
    assert len(_gpu_problems(engine_set, manifest, mixed)) == 1  # every visible GPU is checked
    (problem,) = _gpu_problems(engine_set, manifest, env_with(("NVIDIA B200", "10.0")), allow_other_gpu=True)
    assert "compute capability 10.0" in problem  # the override never crosses compute capabilities


def test_rtx_plans_run_on_their_compute_capability_family(engine_set: Path) -> None:
    manifest = _as_flavor(engine_set, Flavor.TENSORRT_RTX, None, ["8.9", "12.0"])
    family = env_with(("NVIDIA GeForce RTX 5090", "12.0"), ("NVIDIA RTX PRO 6000 Blackwell", "12.0"))
    assert _gpu_problems(engine_set, manifest, family) == []
    assert _gpu_problems(engine_set, manifest, env_with(("NVIDIA GeForce RTX 4090", "8.9"))) == []
    (problem,) = _gpu_problems(engine_set, manifest, env_with(("NVIDIA RTX A6000", "8.6")))
    assert "compute capability 8.6" in problem and "--compute-capability 8.6" in problem


@pytest.mark.parametrize("installed", ["10.13.0.36", "10.13.1.35", "10.14.0.35"])
def test_plans_need_the_exact_runtime_version(engine_set: Path, installed: str) -> None:
    """A patch or build number apart is still another version: plans do not load across versions."""
    manifest = _as_flavor(engine_set, Flavor.TENSORRT, "NVIDIA H100 80GB HBM3 (simulated)", ["9.0"])
    env = env_with(("NVIDIA H100 80GB HBM3", "9.0"), version=installed)
    problems = check_engine_set(engine_set, manifest, env, verify_files=False)
    assert any(f"built with tensorrt 10.13.0.35, but {installed} is installed" in p for p in problems)


def test_inspect_reads_the_gpu_from_nvidia_smi(engine_set: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """End to end through the CLI, with a stand-in nvidia-smi (no GPU here) reporting an H200."""
    _as_flavor(engine_set, Flavor.TENSORRT, "NVIDIA H100 80GB HBM3", ["9.0"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, NVIDIA H200, 9.0, 143771'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    code, out, _ = run_cli(["inspect", engine_set], capsys)
    assert code == 1 and "GPU 0 is NVIDIA H200, but these datacenter TensorRT plans were built on" in out
    code, out, _ = run_cli(["inspect", engine_set, "--allow-other-gpu"], capsys)
    assert "GPU 0 is NVIDIA H200" not in out
