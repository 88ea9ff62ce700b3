"""`build-engines` with TensorRT-RTX on the CPU (compute capability 8.9), the manifest, rebuilds and refusals.

Nothing can run a plan here. Where a check needs "this machine", it gets a described one: a simulated RTX 4090
(compute capability 8.9) with TensorRT-RTX 1.7.1.116 installed — named as such in each test.
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

from ideogram_trt.cli import main
from ideogram_trt.core.buckets import Bucket
from ideogram_trt.core.digest import file_digest
from ideogram_trt.core.files import FAILPOINT_ENV
from ideogram_trt.core.gpu import GpuInfo
from ideogram_trt.core.manifest import Flavor, Manifest, RuntimeEnv, check_engine_set, require_runnable
from ideogram_trt.engines.builder import BuildRequest, build_engine_set
from ideogram_trt.engines.tensorrt_adapter import load_tensorrt

BUCKETS = [Bucket(256, 256), Bucket(256, 384)]
CHANGED = [Bucket(256, 256), Bucket(320, 320)]  # the second bucket replaced
RTX_VERSION = load_tensorrt(Flavor.TENSORRT_RTX).__version__
SIMULATED_RTX_4090 = RuntimeEnv(
    versions={Flavor.TENSORRT: None, Flavor.TENSORRT_RTX: RTX_VERSION, Flavor.ONNXRUNTIME: "1.32.0"},
    gpus=[GpuInfo(0, "NVIDIA GeForce RTX 4090 (simulated)", "8.9", 24564)],
)
COMPONENTS = ("text_encoder", "dit_cond", "dit_uncond", "vae_decoder")
ENGINES = (*COMPONENTS, "sampler")  # TensorRT sets add the sampler: the CFG + Euler step on the GPU


def request(out: Path, **kwargs) -> BuildRequest:
    base = {
        "recipe": "fp8-wo",
        "buckets": BUCKETS,
        "flavor": "tensorrt-rtx",
        "compute_capabilities": ("8.9",),
        "max_batch": 2,
        "max_text_tokens": 128,
    }
    return BuildRequest(out=out, **{**base, **kwargs})


def check_manifest(out: Path, manifest: Manifest, recipe: str) -> None:
    """Profiles, shapes and hashes, read back from manifest.json."""
    assert manifest == Manifest.load(out)
    assert (manifest.flavor, manifest.runtime_version, manifest.compute_capabilities) == (
        Flavor.TENSORRT_RTX,
        RTX_VERSION,
        ["8.9"],
    )
    assert (manifest.recipe, manifest.dtype) == (recipe, "bf16")
    assert manifest.buckets == [b.name for b in BUCKETS]
    assert sorted(manifest.engines) == sorted(ENGINES)
    for entry in manifest.engines.values():
        path = out / entry.file
        assert path.is_file() and file_digest(path) == entry.sha256 and path.stat().st_size == entry.bytes
        assert entry.build is not None and entry.build.plan_bytes == entry.bytes and entry.build.seconds > 0
        assert entry.build.peak_host_memory_bytes > 100 << 20
        folder = out / ("sampler" if entry.graph == "sampler" else "onnx")
        export = json.loads((folder / f"{entry.graph.value}.json").read_text())
        assert entry.onnx_sha256 == export["file_sha256"] == file_digest(folder / f"{entry.graph.value}.onnx")
    text = manifest.engines["text_encoder"]
    assert [p.bucket for p in text.profiles] == [None]
    ids = text.profiles[0].shapes["input_ids"]
    assert (ids.min, ids.opt, ids.max) == ([1, 1], [1, 128], [2, 128])
    for graph in ("dit_cond", "dit_uncond", "vae_decoder", "sampler"):
        entry = manifest.engines[graph]
        assert [p.bucket for p in entry.profiles] == [b.name for b in BUCKETS]
        assert [p.index for p in entry.profiles] == list(range(len(BUCKETS)))
    for profile, bucket in zip(manifest.engines["dit_cond"].profiles, BUCKETS, strict=True):
        n = bucket.tokens
        latents, rope = profile.shapes["latents"], profile.shapes["rope_cos"]
        assert (latents.min, latents.max) == ([1, n, 16], [2, n, 16])
        assert (rope.min, rope.opt, rope.max) == ([1 + n, 32], [128 + n, 32], [128 + n, 32])
    for profile, bucket in zip(manifest.engines["vae_decoder"].profiles, BUCKETS, strict=True):
        assert profile.shapes["latents"].max == [2, *bucket.grid, 16]
    assert manifest.model.latent_channels == 16 and manifest.model.has_unconditional
    assert manifest.model.rope is not None and len(manifest.model.rope.inv_freq) == 16
    assert (out / manifest.tokenizer / "tokenizer.json").is_file()
    assert check_engine_set(out, manifest, SIMULATED_RTX_4090, Bucket(256, 384)) == []


class TestFp8WeightOnlyEngineSet:
    """One engine set built from the checkpoint, then rebuilt, re-bucketed, tampered with and interrupted."""

    @pytest.fixture(scope="class")
    def engine_set(self, tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
        out = tmp_path_factory.mktemp("engines") / "fp8-wo"
        argv = ["build-engines", "--model", str(tiny_dir), "--out", str(out), "--recipe", "fp8-wo"]
        argv += [
            "--flavor",
            "tensorrt-rtx",
            "--compute-capability",
            "8.9",
            "--buckets",
            ",".join(b.name for b in BUCKETS),
        ]
        assert main([*argv, "--max-batch", "2", "--max-text-tokens", "128"]) == 0
        return out

    def copy(self, engine_set: Path, tmp_path: Path) -> Path:
        copy = tmp_path / "set"
        shutil.copytree(engine_set, copy)
        return copy

    def test_builds_all_four_components(self, engine_set: Path) -> None:
        check_manifest(engine_set, Manifest.load(engine_set), "fp8-wo")

    def test_inspect_prints_the_set_and_checks_this_machine(self, engine_set: Path, capsys) -> None:
        """This machine has no GPU: inspect shows the set and says it cannot run here (exit 1)."""
        assert main(["inspect", str(engine_set)]) == 1
        out = capsys.readouterr().out
        assert "tensorrt-rtx" in out and "dit_cond" in out and "256x384" in out
        assert "cannot run on this machine" in out and "no NVIDIA GPU visible" in out

    def test_second_run_rebuilds_nothing(self, engine_set: Path, tiny_dir: Path, tmp_path: Path) -> None:
        out = self.copy(engine_set, tmp_path)
        before = (out / "manifest.json").read_text()
        outcome = build_engine_set(request(out, model=tiny_dir))
        assert outcome.built == [] and sorted(outcome.reused) == sorted(ENGINES)
        assert (out / "manifest.json").read_text() == before

    def test_changing_a_bucket_rebuilds_only_what_depends_on_it(
        self, engine_set: Path, tiny_dir: Path, tmp_path: Path
    ) -> None:
        """One plan holds every bucket's profile, so the DiTs, the sampler and the VAE change; the text encoder
        does not."""
        out = self.copy(engine_set, tmp_path)
        old = Manifest.load(out)
        outcome = build_engine_set(request(out, model=tiny_dir, buckets=CHANGED))
        assert sorted(outcome.built) == ["dit_cond", "dit_uncond", "sampler", "vae_decoder"]
        assert outcome.reused == ["text_encoder"]
        new = Manifest.load(out)
        assert new.engines["text_encoder"] == old.engines["text_encoder"]
        assert [p.bucket for p in new.engines["dit_cond"].profiles] == [b.name for b in CHANGED]
        assert sorted(p.name for p in (out / "plans").iterdir()) == sorted(
            Path(r.file).name for e in new.engines.values() for r in e.files
        )  # the plans and their anatomy files, nothing stale

    def test_manifest_refuses_mismatches(self, engine_set: Path, tmp_path: Path) -> None:
        out = self.copy(engine_set, tmp_path)
        manifest = Manifest.load(out)
        other_version = RuntimeEnv(
            {**SIMULATED_RTX_4090.versions, Flavor.TENSORRT_RTX: "1.8.0.0"}, SIMULATED_RTX_4090.gpus
        )
        with pytest.raises(
            Exception, match=rf"built with tensorrt-rtx {RTX_VERSION}, but 1.8.0.0 is installed.*rebuild"
        ):
            require_runnable(out, manifest, other_version)
        h100 = RuntimeEnv(SIMULATED_RTX_4090.versions, [GpuInfo(0, "NVIDIA H100 80GB HBM3 (simulated)", "9.0", 81559)])
        with pytest.raises(
            Exception, match=r"compute capability 9.0; the plans were built for 8.9.*--compute-capability 9.0"
        ):
            require_runnable(out, manifest, h100)
        with pytest.raises(Exception, match=r"1024x1024 is not a bucket of this engine set \(nearest: 256x256"):
            require_runnable(out, manifest, SIMULATED_RTX_4090, Bucket(1024, 1024))
        plan = out / manifest.engines["dit_cond"].file
        data = bytearray(plan.read_bytes())
        data[len(data) // 2] ^= 0xFF
        plan.write_bytes(bytes(data))
        with pytest.raises(Exception, match=r"dit_cond\..*\.plan: changed since it was built.*rebuild"):
            require_runnable(out, manifest, SIMULATED_RTX_4090)
        (out / manifest.engines["vae_decoder"].file).unlink()
        problems = check_engine_set(out, manifest, SIMULATED_RTX_4090)
        assert any("vae_decoder" in p and "missing (engine vae_decoder)" in p for p in problems)

    def test_killed_build_leaves_the_previous_set_loadable(
        self, engine_set: Path, tiny_dir: Path, tmp_path: Path
    ) -> None:
        out = self.copy(engine_set, tmp_path)
        before = (out / "manifest.json").read_bytes()
        argv = [sys.executable, "-m", "ideogram_trt", "build-engines", "--model", str(tiny_dir), "--out", str(out)]
        argv += ["--recipe", "fp8-wo", "--flavor", "tensorrt-rtx", "--compute-capability", "8.9"]
        argv += ["--buckets", ",".join(b.name for b in CHANGED), "--max-batch", "2", "--max-text-tokens", "128"]
        process = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        assert process.stderr is not None
        deadline = time.monotonic() + 300
        for line in process.stderr:
            if "dit_cond: building" in line or time.monotonic() > deadline:
                break
        process.send_signal(signal.SIGKILL)  # no chance to clean up: the worst case
        process.wait(timeout=60)
        assert (out / "manifest.json").read_bytes() == before
        manifest = Manifest.load(out)
        assert check_engine_set(out, manifest, SIMULATED_RTX_4090) == []
        referenced = {out / e.file for e in manifest.engines.values()}
        assert all(p.is_file() for p in referenced)
        assert not any(p.name.endswith(".tmp") for p in referenced)

    @pytest.mark.parametrize("action", ["kill", "enospc"])
    def test_a_failed_plan_commit_keeps_the_previous_set(
        self, engine_set: Path, tiny_dir: Path, tmp_path: Path, action: str
    ) -> None:
        """kill -9 or a full disk at the moment a rebuilt plan is committed (core.files failpoints): the previous
        set loads and checks clean, and the next run leaves none of our temporaries."""
        out = self.copy(engine_set, tmp_path)
        before = (out / "manifest.json").read_bytes()
        argv = [sys.executable, "-m", "ideogram_trt", "build-engines", "--model", str(tiny_dir), "--out", str(out)]
        argv += ["--recipe", "fp8-wo", "--flavor", "tensorrt-rtx", "--compute-capability", "8.9"]
        argv += ["--buckets", ",".join(b.name for b in CHANGED), "--max-batch", "2", "--max-text-tokens", "128"]
        env = {**os.environ, FAILPOINT_ENV: f"{action}@dit_cond.*.plan"}  # the first plan rebuilt
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == (-signal.SIGKILL if action == "kill" else 2), result.stderr
        assert (out / "manifest.json").read_bytes() == before
        manifest = Manifest.load(out)
        assert check_engine_set(out, manifest, SIMULATED_RTX_4090) == []
        leftovers = [p for p in (out / "plans").iterdir() if ".ideogram-tmp-" in p.name]
        assert bool(leftovers) == (action == "kill")  # ENOSPC cleans up on the way out; a kill cannot
        assert subprocess.run(argv, capture_output=True, timeout=600).returncode == 0
        assert not [p for p in out.rglob("*") if ".ideogram-tmp-" in p.name or ".ideogram-partial-" in p.name]

    def test_switching_to_the_fp8_recipe_rebuilds_only_the_dits(
        self, engine_set: Path, tiny_dir: Path, calibration_file: Path, tmp_path: Path
    ) -> None:
        """The fp8 recipe changes the DiTs' graphs only: the text encoder stays weight-only and the VAE has no
        FP8 weights, so their plans (and the sampler's) are kept, and the set is a complete fp8 set."""
        out = self.copy(engine_set, tmp_path)
        before = Manifest.load(out)
        outcome = build_engine_set(request(out, model=tiny_dir, recipe="fp8", calibration=calibration_file))
        assert sorted(outcome.built) == ["dit_cond", "dit_uncond"]
        assert sorted(outcome.reused) == ["sampler", "text_encoder", "vae_decoder"]
        for name in outcome.reused:
            assert outcome.manifest.engines[name] == before.engines[name]
        check_manifest(out, outcome.manifest, "fp8")
        assert (
            outcome.manifest.calibration
            == json.loads((out / "onnx" / "dit_cond.json").read_text())["calibration"]["sha256"]
        )
        # Every plan's anatomy reads back; the fp8 DiT's blocks have four FP8 GEMMs each (issue 15).
        from ideogram_trt.cli import main

        anatomy, model = tmp_path / "anatomy.json", tmp_path / "model.json"
        assert main(["inspect", str(out), "--anatomy", "--json", str(anatomy)]) == 0
        engines = {e["engine"]: e for e in json.loads(anatomy.read_text())["engines"]}
        assert sorted(engines) == sorted(ENGINES)
        assert {b["fp8_gemm"] for b in engines["dit_cond"]["blocks"].values()} == {4}
        assert main(["bench", "--model", "--engines", str(out), "--card", "h100", "--json", str(model)]) == 0
        stages = json.loads(model.read_text())["stages"]
        assert all(stages[s] is not None for s in ("text_encoder", "dit_cond_pass", "dit_uncond_pass", "vae_decoder"))


class TestPerBucketPlans:
    def test_multi_profile_plan_is_smaller_than_per_bucket_plans(self, tiny_dir: Path, tmp_path: Path) -> None:
        dits = ("dit_cond", "dit_uncond", "vae_decoder")
        shared = build_engine_set(request(tmp_path / "shared", model=tiny_dir, components=dits))
        split = build_engine_set(
            request(tmp_path / "split", onnx=tmp_path / "shared" / "onnx", components=dits, per_bucket=True)
        )
        one_plan = shared.manifest.engines["dit_cond"].bytes
        per_bucket = [split.manifest.engines[f"dit_cond@{b.name}"].bytes for b in BUCKETS]
        assert one_plan < sum(per_bucket), (one_plan, per_bucket)
        # Per-bucket plans rebuild per bucket: changing one bucket rebuilds that bucket's plans only.
        again = build_engine_set(
            request(
                tmp_path / "split", onnx=tmp_path / "shared" / "onnx", components=dits, per_bucket=True, buckets=CHANGED
            )
        )
        assert sorted(again.built) == [f"{g}@320x320" for g in ("dit_cond", "dit_uncond", "sampler", "vae_decoder")]
        assert len(again.reused) == 4  # the unchanged bucket's plans
        # One plan per bucket: the anatomy shown is that bucket's plans', and the model takes them.
        from ideogram_trt.cli import main

        shown = tmp_path / "anatomy.json"
        assert main(["inspect", str(tmp_path / "split"), "--anatomy", "--bucket", "320x320", "--json", str(shown)]) == 0
        names = sorted(e["engine"] for e in json.loads(shown.read_text())["engines"])
        assert names == [f"{g}@320x320" for g in ("dit_cond", "dit_uncond", "sampler", "vae_decoder")]
        assert main(["bench", "--model", "--engines", str(tmp_path / "split"), "--bucket", "320x320"]) == 0


def test_unavailable_flavor_is_one_line_without_fallback(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "engines"
    result = subprocess.run(
        [sys.executable, "-m", "ideogram_trt", "build-engines", "--model", str(tiny_dir), "--out", str(out),
         "--flavor", "tensorrt", "--recipe", "fp8-wo"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert (
        lines[0] == "error: --flavor tensorrt: tensorrt is not importable here (available: tensorrt-rtx, onnxruntime)"
    )
    assert not out.exists() or not any(out.iterdir())
