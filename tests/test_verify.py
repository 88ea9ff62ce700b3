"""``ideogram-trt verify``: an engine set against the fp32 PyTorch reference.

Two halves. ONNX Runtime sets run for real (the CLI, the report files, the JSON schema, and the reported numbers
recomputed here from the set's graph file and the checkpoint's own modules). TensorRT-RTX sets are real builds
over the FAKE GPU (ideogram_trt/testing/fake_tensorrt.py: each plan runs the ONNX graph it was built from, and
the fake enforces the plan's profiles); each planted fault — a plan built from another recipe, a DiT from
another checkpoint, a corrupted activation scale, another tokenizer, a plan without a bucket's profile — must fail
the check that names it, and no check about anything else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import FAKE_GPU_LORA_RANK, assert_one_line_error, run_cli

from ideogram_trt.cli import main
from ideogram_trt.core import rope
from ideogram_trt.core.gpu import GpuInfo
from ideogram_trt.core.manifest import MANIFEST_FILE, FileRecord, Flavor, Manifest, RuntimeEnv
from ideogram_trt.model.build import load_dit
from ideogram_trt.model.checkpoint import open_checkpoint
from ideogram_trt.model.dit import rope_inv_freq
from ideogram_trt.runtime.tensorrt_backend import TensorRTBackend
from ideogram_trt.testing.fake_tensorrt import FakeCuda, FakePlan, FakeTensorRT
from ideogram_trt.verify.report import Status
from ideogram_trt.verify.run import DEFAULT_PROMPTS, VerifyRequest, verify

SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "verify_report.schema.json"
QUICK = ["--steps", "2", "--repeats", "1"]  # two denoising steps end to end, one timed request


def own_snr_db(reference: np.ndarray, engine: np.ndarray) -> float:
    """10·log10(Σ ref² / Σ (ref − engine)²) in float64: docs/VERIFY.md §3's metric, computed here."""
    ref, eng = np.asarray(reference, np.float64), np.asarray(engine, np.float64)
    return float(10 * np.log10(np.sum(ref**2) / np.sum((ref - eng) ** 2)))


def probe_seed(name: str) -> int:
    """docs/VERIFY.md §2: the first 8 bytes of sha256(check name), big-endian."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def uncond_inputs(name: str, checkpoint_dir: Path, height: int, width: int) -> dict[str, np.ndarray]:
    """dit_uncond's inputs as docs/VERIFY.md §2 specifies them, drawn here."""
    checkpoint = open_checkpoint(checkpoint_dir)
    config = checkpoint.unconditional_transformer
    assert config is not None
    grid = (height // 16, width // 16)
    rng = np.random.default_rng(probe_seed(name))
    latents = rng.standard_normal((1, grid[0] * grid[1], config.in_channels), dtype=np.float32)
    cos, sin = rope.rope_tables(rope.image_positions(*grid), rope_inv_freq(config), config.mrope_section)
    return {"latents": latents, "timestep": np.full((1,), 0.625, np.float32), "rope_cos": cos, "rope_sin": sin}


def reference_uncond(checkpoint_dir: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The checkpoint's own unconditional DiT in fp32 (the modules the diffusers parity tests check)."""
    dit = load_dit(open_checkpoint(checkpoint_dir), "unconditional_transformer", torch.float32)
    with torch.no_grad():
        args = [torch.from_numpy(feeds[k]) for k in ("latents", "timestep", "rope_cos", "rope_sin")]
        return dit(*args).numpy()


def run_graph(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def replant(engine_set: Path, name: str, plan: Path, anatomy: Path | None = None) -> None:
    """Put another file in engine ``name``'s place and record it in the manifest as a build would (so the hash
    checks pass: the fault is in what the file computes, not in its bytes)."""
    manifest = Manifest.load(engine_set)
    entry = manifest.engines[name]
    shutil.copyfile(plan, engine_set / entry.file)
    data = plan.read_bytes()
    entry = dataclasses.replace(entry, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    if anatomy is not None:
        assert entry.anatomy is not None
        shutil.copyfile(anatomy, engine_set / entry.anatomy.file)
        body = anatomy.read_bytes()
        entry = dataclasses.replace(
            entry, anatomy=FileRecord(entry.anatomy.file, hashlib.sha256(body).hexdigest(), len(body))
        )
    dataclasses.replace(manifest, engines={**manifest.engines, name: entry}).save(engine_set)


def failed(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {check.name for check in report.failures}


# --- ONNX Runtime: real sessions, the CLI ----------------------------------------------------------------------


class TestVerifyOnnxRuntime:
    @pytest.fixture(scope="class")
    def reports(self, bf16_engines: Path, tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
        out = tmp_path_factory.mktemp("verify")
        argv = ["verify", str(bf16_engines), "--model", str(tiny_dir), "--bucket", "all", *QUICK,
                "--json", str(out / "report.json"), "--markdown", str(out / "report.md")]  # fmt: skip
        assert main(argv) == 0
        return out

    def test_report_json_matches_its_schema_and_markdown_names_every_check(self, reports: Path) -> None:
        import jsonschema

        body = json.loads((reports / "report.json").read_text())
        jsonschema.validate(body, json.loads(SCHEMA.read_text()))
        assert body["passed"] is True and body["counts"]["FAIL"] == 0
        assert body["command"].startswith("ideogram-trt verify ") and "--json" in body["command"]
        assert body["engine_set"]["verified_buckets"] == ["256x256", "256x384"]
        markdown = (reports / "report.md").read_text()
        assert markdown.startswith("# ideogram-trt verify: PASS")
        for check in body["checks"]:
            assert f"| {check['name']} |" in markdown
        kinds = {c["kind"] for c in body["checks"]}
        assert kinds == {"engine_set", "provenance", "tokenizer", "profiles", "engine", "end_to_end", "timing"}
        # Every engine at each bucket, the text-dependent ones at two lengths; both prompts at both buckets.
        names = {c["name"] for c in body["checks"] if c["kind"] == "engine"}
        assert "text_encoder T=7" in names and "text_encoder T=2048" in names
        assert {f"dit_cond@{b} T={t}" for b in ("256x256", "256x384") for t in (7, 2048)} <= names
        e2e = [c for c in body["checks"] if c["kind"] == "end_to_end"]
        assert len(e2e) == 2 * 2 * 2  # latents and image, 2 prompts, 2 buckets

    def test_reported_numbers_are_recomputed_from_the_graph_and_the_checkpoint(
        self, reports: Path, bf16_engines: Path, tiny_dir: Path
    ) -> None:
        body = json.loads((reports / "report.json").read_text())
        check = next(c for c in body["checks"] if c["name"] == "dit_uncond@256x384")
        assert check["bound"] == 60.0 and check["metric"] == "snr_db"  # fp32 graphs, bf16 recipe (§3)
        feeds = uncond_inputs(check["name"], tiny_dir, 256, 384)
        engine = run_graph(bf16_engines / Manifest.load(bf16_engines).engines["dit_uncond"].file, feeds)
        ours = own_snr_db(reference_uncond(tiny_dir, feeds), engine)
        # Both are float32 noise around 130 dB: compare the relative errors they stand for.
        assert ours >= check["bound"] and check["value"] >= check["bound"]
        assert abs(10 ** (-ours / 20) - 10 ** (-check["value"] / 20)) < 1e-5

    @pytest.fixture(scope="class")
    def other(self, tmp_path_factory: pytest.TempPathFactory) -> Path:
        """Another tiny checkpoint: the same shapes, other random weights."""
        other = tmp_path_factory.mktemp("other") / "ckpt"
        assert main(["make-tiny", str(other), "--seed", "1"]) == 0
        return other

    def test_another_checkpoint_fails_every_provenance_check(
        self, bf16_engines: Path, other: Path, tmp_path: Path
    ) -> None:
        out = tmp_path / "r.json"
        assert main(["verify", str(bf16_engines), "--model", str(other), *QUICK, "--json", str(out)]) == 1
        body = json.loads(out.read_text())
        provenance = {c["name"]: c for c in body["checks"] if c["kind"] == "provenance"}
        assert set(provenance) == {
            f"checkpoint: {g}" for g in ("text_encoder", "dit_cond", "dit_uncond", "vae_decoder")
        }
        assert all(c["status"] == "FAIL" and "the manifest says" in c["detail"] for c in provenance.values())

    def test_a_dit_from_another_checkpoint_fails_that_engine_and_the_requests(
        self, bf16_engines: Path, tiny_dir: Path, other: Path, tmp_path: Path
    ) -> None:
        assert main(["export", "--model", str(other), "--out", str(tmp_path / "onnx"), "--recipe", "bf16",
                     "--dtype", "fp32", "--components", "dit_uncond"]) == 0  # fmt: skip
        planted = tmp_path / "set"
        shutil.copytree(bf16_engines, planted)
        replant(planted, "dit_uncond", tmp_path / "onnx" / "dit_uncond.onnx")
        argv = ["verify", str(planted), "--model", str(tiny_dir), *QUICK, "--json", str(tmp_path / "r.json"),
                "--images", str(tmp_path / "pictures")]  # fmt: skip
        assert main(argv) == 1
        from PIL import Image

        pictures = sorted(p.name for p in (tmp_path / "pictures").iterdir())
        assert pictures == ["prompt-1_256x256.png", "prompt-2_256x256.png"]
        strip = np.asarray(Image.open(tmp_path / "pictures" / pictures[0]))
        assert strip.shape == (256, 3 * 256 + 8, 3)  # engines | reference | difference, 4-pixel gaps
        engine, reference, difference = strip[:, :256], strip[:, 260:516], strip[:, 520:]
        expected = np.clip(np.abs(engine.astype(int) - reference.astype(int)) * 8, 0, 255)
        assert np.array_equal(difference, expected) and difference.max() > 0
        body = json.loads((tmp_path / "r.json").read_text())
        bad = {c["name"] for c in body["checks"] if c["status"] == "FAIL"}
        assert {c for c in bad if not c.startswith(("latents", "image"))} == {"dit_uncond@256x256"}
        assert bad & {"latents prompt 1@256x256", "latents prompt 2@256x256"}  # the whole request drifts too
        check = next(c for c in body["checks"] if c["name"] == "dit_uncond@256x256")
        feeds = uncond_inputs(check["name"], tiny_dir, 256, 256)
        engine = run_graph(planted / Manifest.load(planted).engines["dit_uncond"].file, feeds)
        ours = own_snr_db(reference_uncond(tiny_dir, feeds), engine)
        assert ours < 20.0 and check["value"] == pytest.approx(ours, abs=0.01)  # against the reference, not the set

    def test_bad_input_is_one_line_and_writes_nothing(
        self, bf16_engines: Path, tiny_dir: Path, tmp_path: Path, capsys
    ) -> None:  # type: ignore[no-untyped-def]
        base = ["verify", bf16_engines, "--model", tiny_dir]
        cases = [
            ([*base, "--bucket", "512x512"], "not a bucket of this engine set"),
            ([*base, "--repeats", "0"], "--repeats 0"),
            ([*base, "--card", "h999"], "unknown card"),
            ([*base, "--max-slowdown", "0.5"], "--max-slowdown 0.5"),
            ([*base, "--recipe-bounds", tmp_path / "missing.json"], "no such file"),
            (["verify", tmp_path, "--model", tiny_dir], "no manifest.json"),
            ([*base, "--json", tmp_path], "--json report"),
        ]
        bad = tmp_path / "bounds.json"
        bad.write_text(json.dumps({"format": 1, "bounds": {"bf16/fp32": {"engine_snr_db": "high"}}}))
        cases.append(([*base, "--recipe-bounds", bad], "must give exactly"))
        cases.append(([*base, "--images", tmp_path], "give a new or empty folder"))
        if not torch.cuda.is_available():
            cases.append(([*base, "--device", "cuda"], "no CUDA device is visible"))
        for argv, needle in cases:
            code, _, err = run_cli(argv, capsys)
            assert_one_line_error(code, err, needle)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bounds.json"]

    def test_recipe_bounds_file_replaces_the_built_in_bound(
        self, bf16_engines: Path, tiny_dir: Path, tmp_path: Path
    ) -> None:
        """A bound above anything fp32 can reach fails every engine check, and says where it came from."""
        bounds = tmp_path / "bounds.json"
        pair = {"engine_snr_db": 400, "latent_snr_db": 10, "image_psnr_db": 10}
        bounds.write_text(json.dumps({"format": 1, "bounds": {"bf16/fp32": pair}}))
        argv = ["verify", str(bf16_engines), "--model", str(tiny_dir), *QUICK, "--recipe-bounds", str(bounds),
                "--json", str(tmp_path / "r.json")]  # fmt: skip
        assert main(argv) == 1
        body = json.loads((tmp_path / "r.json").read_text())
        assert body["bounds"]["source"] == str(bounds) and body["bounds"]["engine_snr_db"] == 400
        engine = [c for c in body["checks"] if c["kind"] == "engine"]
        assert engine and all(c["status"] == "FAIL" for c in engine)
        assert all(c["status"] == "PASS" for c in body["checks"] if c["kind"] == "end_to_end")


def test_the_reference_of_a_bf16_set_rounds_timesteps_through_bf16(checkpoint) -> None:  # type: ignore[no-untyped-def]
    """docs/VERIFY.md §3.2: the DiT casts t to its compute dtype before the sinusoid; a bf16 engine's reference
    does the same and stays fp32 everywhere else."""
    from ideogram_trt.core.components import Component
    from ideogram_trt.core.recipes import Recipe
    from ideogram_trt.core.sidecar import ExportSettings
    from ideogram_trt.verify.reference import Reference

    settings = ExportSettings(False, False, [])
    rounded = Reference(checkpoint, Recipe.BF16, settings, None, "cpu", timestep_dtype=torch.bfloat16)
    plain = Reference(checkpoint, Recipe.BF16, settings, None, "cpu")
    cos, sin = plain.image_tables((16, 16))
    latents = np.random.default_rng(0).standard_normal((1, 256, checkpoint.transformer.in_channels), np.float32)

    def velocity(reference: Reference, t: float) -> np.ndarray:
        return reference.run(Component.DIT_UNCOND, [latents, np.array([t], np.float32), cos, sin])

    assert np.array_equal(velocity(rounded, 0.6), velocity(plain, 0.6015625))  # bf16(0.6) = 0.6015625
    assert own_snr_db(velocity(plain, 0.6), velocity(rounded, 0.6)) < 30  # and the rounding matters


def test_a_tensorrt_set_on_a_machine_without_a_gpu_fails_the_machine_check_and_skips_the_rest(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """The CLI on this machine, honestly: no GPU, so no plan runs; the report says so and exits 1."""
    engines = tmp_path / "rtx"
    assert main(["build-engines", "--model", str(tiny_dir), "--out", str(engines), "--flavor", "tensorrt-rtx",
                 "--compute-capability", "8.9", "--recipe", "fp8-wo", "--dtype", "fp32", "--buckets", "256x256",
                 "--components", "dit_uncond", "--max-text-tokens", "16"]) == 0  # fmt: skip
    assert main(["verify", str(engines), "--model", str(tiny_dir), "--json", str(tmp_path / "r.json")]) == 1
    body = json.loads((tmp_path / "r.json").read_text())
    machine = next(c for c in body["checks"] if c["name"] == "machine")
    assert machine["status"] == "FAIL" and "GPU" in machine["detail"]
    assert {c["status"] for c in body["checks"] if c["kind"] in ("engine", "end_to_end", "timing")} == {"SKIP"}


# --- TensorRT-RTX over the fake GPU: planted faults ----------------------------------------------------------


def registry(engine_set: Path, onnx_dir: Path) -> dict[str, FakePlan]:
    """What each plan of a set was built from, read right after its build (before any fault is planted): the
    fake GPU's knowledge of a plan, as a real GPU's is the plan itself."""
    plans = {}
    for entry in Manifest.load(engine_set).engines.values():
        folder = engine_set / "sampler" if entry.graph.value == "sampler" else onnx_dir
        profiles = [{n: (tuple(r.min), tuple(r.opt), tuple(r.max)) for n, r in p.shapes.items()}
                    for p in entry.profiles]  # fmt: skip
        plans[entry.sha256] = FakePlan(folder / f"{entry.graph.value}.onnx", profiles)
    return plans


def plan_files(engine_set: Path, name: str) -> tuple[Path, Path]:
    entry = Manifest.load(engine_set).engines[name]
    assert entry.anatomy is not None
    return engine_set / entry.file, engine_set / entry.anatomy.file


# As conftest's fake_gpu_sets, the good set here: fault plans have its profiles.
RTX = ["--flavor", "tensorrt-rtx", "--compute-capability", "8.9", "--dtype", "fp32", "--max-batch", "2",
       "--max-text-tokens", "64"]  # fmt: skip
BUCKETS = "256x256,256x384"


class TestVerifyOnAFakeGpu:
    @pytest.fixture(scope="class")
    def built(
        self, tiny_dir: Path, calibration_file: Path, exports, fake_gpu_sets, tmp_path_factory: pytest.TempPathFactory
    ) -> dict[str, object]:  # type: ignore[no-untyped-def]
        """The good fp8 set (conftest's, shared with test_tensorrt_backend.py), and the plans each fault is made
        of, each a real TensorRT-RTX build."""
        root = tmp_path_factory.mktemp("verify-rtx")
        good = fake_gpu_sets[0]
        plans = registry(good, good / "onnx")

        def build(name: str, onnx_dir: Path, component: str, buckets: str = BUCKETS, recipe: str = "fp8") -> Path:
            out = root / name
            args = ["build-engines", "--onnx", str(onnx_dir), "--out", str(out), "--recipe", recipe,
                    "--components", component, "--buckets", buckets, *RTX]  # fmt: skip
            assert main(args) == 0
            plans.update(registry(out, onnx_dir))
            return out

        # A dit_cond plan from the fp8-wo recipe (no activation Q/DQ), which the fp8 manifest does not say.
        weight_only = build(
            "fp8-wo",
            exports.get("fp8-wo", "fp32", ("dit_cond",), lora_rank=FAKE_GPU_LORA_RANK),
            "dit_cond",
            recipe="fp8-wo",
        )
        # A dit_uncond plan from another checkpoint, same recipe (its own calibration).
        other = root / "other-ckpt"
        assert main(["make-tiny", str(other), "--seed", "1"]) == 0
        assert main(["calibrate", "--model", str(other), "--out", str(root / "other.json"), "--resolution",
                     "256x256", "--preset", "V4_TURBO_12", "--limit", "1"]) == 0  # fmt: skip
        assert main(["export", "--model", str(other), "--out", str(root / "other-onnx"), "--recipe", "fp8",
                     "--dtype", "fp32", "--calibration", str(root / "other.json"),
                     "--components", "dit_uncond"]) == 0  # fmt: skip
        other_set = build("other", root / "other-onnx", "dit_uncond")
        # A dit_cond plan whose first activation scale was divided by 100: everything above it saturates.
        corrupt = root / "corrupt-onnx"
        shutil.copytree(good / "onnx", corrupt)
        graph = onnx.load(str(corrupt / "dit_cond.onnx"))
        scales = {n.input[1] for n in graph.graph.node if n.op_type == "QuantizeLinear"}
        target = next(i for i in graph.graph.initializer if i.name in scales)
        value = onnx.numpy_helper.to_array(target) / 100
        target.CopyFrom(onnx.numpy_helper.from_array(value.astype(value.dtype), target.name))
        onnx.save(graph, str(corrupt / "dit_cond.onnx"))
        sidecar = json.loads((corrupt / "dit_cond.json").read_text())
        sidecar["file_sha256"] = hashlib.sha256((corrupt / "dit_cond.onnx").read_bytes()).hexdigest()
        (corrupt / "dit_cond.json").write_text(json.dumps(sidecar))
        corrupt_set = build("corrupt", corrupt, "dit_cond")
        # A dit_cond plan built for the first bucket only: one profile where the manifest names two.
        one_bucket = build("one-bucket", good / "onnx", "dit_cond", buckets="256x256")
        return {"good": good, "plans": plans, "fp8-wo": weight_only, "other": other_set, "corrupt": corrupt_set,
                "one-bucket": one_bucket, "calibration": calibration_file, "checkpoint": tiny_dir,
                "other calibration": root / "other.json"}  # fmt: skip

    def verify(self, built: dict, engine_set: Path, **changes: object):  # type: ignore[no-untyped-def]
        manifest = Manifest.load(engine_set)
        plans = built["plans"]

        def open_backend(root: Path, loaded: Manifest) -> TensorRTBackend:
            cuda = FakeCuda()
            return TensorRTBackend(root, loaded, cuda=cuda, module=FakeTensorRT(cuda, plans))

        env = RuntimeEnv(
            {Flavor.TENSORRT_RTX: manifest.runtime_version, Flavor.ONNXRUNTIME: ort.__version__, Flavor.TENSORRT: None},
            [GpuInfo(0, "FAKE GPU (no device: plans run their ONNX graphs)", "8.9", 0)],
        )
        # Faults run at the second bucket (profile 1) with one prompt; the good set at both, with both prompts.
        request = VerifyRequest(engine_set, built["checkpoint"], buckets=("256x384",), prompts=DEFAULT_PROMPTS[1:],
                                steps=2, repeats=1, calibration=built["calibration"], command="pytest")  # fmt: skip
        request = dataclasses.replace(request, **changes)  # type: ignore[arg-type]
        return verify(request, env=env, open_backend=open_backend, quiet=True)

    def planted(self, built: dict, tmp_path: Path) -> Path:  # type: ignore[type-arg]
        out = tmp_path / "set"
        shutil.copytree(built["good"], out)
        return out

    def test_the_good_set_passes_every_check(self, built: dict) -> None:  # type: ignore[type-arg]
        report = self.verify(built, built["good"], buckets=("all",), prompts=DEFAULT_PROMPTS)
        assert report.passed, [(c.name, c.detail) for c in report.failures]
        statuses = {c.name: c.status for c in report.checks}
        expected = ("machine", "files", "structure", "calibration", "tokenizer", "recipe: dit_cond",
                    "profiles: dit_cond", "profiles: sampler", "sampler@256x384", "dit_cond@256x384 T=64")  # fmt: skip
        for name in expected:
            assert statuses[name] is Status.PASS, name
        assert Path(report.reference["export_settings"]["from"]).parent == built["good"] / "onnx"
        timing = [c for c in report.checks if c.kind.value == "timing"]
        assert timing and all(c.status is Status.INFO for c in timing)  # no card models a fake GPU

    def test_times_are_compared_with_the_model_of_the_plans(self, built: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
        """With a card named, each stage's time is divided by the anatomy model's (engines/step_model.py),
        which `bench --model` reports on its own; the fake GPU is no H200, so only a huge bound passes."""
        import re

        report = self.verify(built, built["good"], buckets=("256x256",), card="h200", max_slowdown=1e9)
        timing = {c.name: c for c in report.checks if c.kind.value == "timing"}
        tokens = int(re.search(r"(\d+) text tokens", timing["step"].detail).group(1))  # type: ignore[union-attr]
        out = tmp_path / "model.json"
        assert main(["bench", "--model", "--engines", str(built["good"]), "--card", "h200", "--bucket", "256x256",
                     "--text-tokens", str(tokens), "--json", str(out)]) == 0  # fmt: skip
        model = json.loads(out.read_text())
        stages = model["stages"]
        guided = model["uncond_steps"] / model["steps"]
        expected = {
            "text_encoder": stages["text_encoder"]["ms"],
            "step": stages["dit_cond_pass"]["ms"] + guided * stages["dit_uncond_pass"]["ms"],
            "vae_decoder": stages["vae_decoder"]["ms"],
        }
        for name, modeled in expected.items():
            check = timing[name]
            assert check.status is Status.PASS and check.metric == "ratio" and check.bound == 1e9
            measured, shown = (float(x) for x in re.findall(r"([\d.]+) ms", check.detail)[:2])
            assert shown == pytest.approx(modeled, abs=0.006)
            assert check.value == pytest.approx(measured / modeled, rel=1e-2)
        report = self.verify(built, built["good"], buckets=("256x256",), card="h200", max_slowdown=1.0)
        assert {c.name for c in report.failures} == set(expected)  # host ONNX Runtime is no H200

    def test_another_calibration_file(self, built: dict) -> None:  # type: ignore[type-arg]
        report = self.verify(built, built["good"], calibration=built["other calibration"])
        check = next(c for c in report.checks if c.name == "calibration")
        assert check.status is Status.FAIL and "the manifest says" in check.detail

    def test_an_fp8_set_needs_its_calibration_file(self, built: dict) -> None:  # type: ignore[type-arg]
        from ideogram_trt.core.errors import InputError

        with pytest.raises(InputError, match="pass --calibration FILE"):
            self.verify(built, built["good"], calibration=None)

    def test_a_plan_from_another_recipe(self, built: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
        engine_set = self.planted(built, tmp_path)
        replant(engine_set, "dit_cond", *plan_files(built["fp8-wo"], "dit_cond"))
        bad = failed(self.verify(built, engine_set))
        assert "recipe: dit_cond" in bad
        engines = {n for n in bad if n.startswith(("dit", "text", "vae", "sampler"))}
        assert engines == {"dit_cond@256x384 T=7", "dit_cond@256x384 T=64"}

    def test_a_dit_from_another_checkpoint(self, built: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
        engine_set = self.planted(built, tmp_path)
        replant(engine_set, "dit_uncond", *plan_files(built["other"], "dit_uncond"))
        report = self.verify(built, engine_set)
        bad = failed(report)
        assert {n for n in bad if not n.startswith(("latents", "image"))} == {"dit_uncond@256x384"}
        assert all(c.status is Status.PASS for c in report.checks if c.name.startswith("checkpoint:"))

    def test_a_corrupted_activation_scale(self, built: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
        engine_set = self.planted(built, tmp_path)
        replant(engine_set, "dit_cond", *plan_files(built["corrupt"], "dit_cond"))
        bad = failed(self.verify(built, engine_set))
        assert {n for n in bad if not n.startswith(("latents", "image"))} == {
            "dit_cond@256x384 T=7",
            "dit_cond@256x384 T=64",
        }

    def test_a_mismatched_tokenizer(self, built: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
        engine_set = self.planted(built, tmp_path)
        manifest = Manifest.load(engine_set)
        path = engine_set / manifest.tokenizer / "tokenizer.json"
        body = json.loads(path.read_text())
        vocab = body["model"]["vocab"]
        a, b = "a", "e"  # swap two common tokens' ids: the same vocabulary, other ids
        vocab[a], vocab[b] = vocab[b], vocab[a]
        path.write_text(json.dumps(body))
        data = path.read_bytes()
        files = [FileRecord(r.file, hashlib.sha256(data).hexdigest(), len(data)) if r.file == "tokenizer.json" else r
                 for r in manifest.tokenizer_files]  # fmt: skip
        dataclasses.replace(manifest, tokenizer_files=files).save(engine_set)
        bad = failed(self.verify(built, engine_set))
        assert "tokenizer" in bad
        assert not {n for n in bad if n.startswith(("dit", "text", "vae", "sampler", "profiles", "recipe"))}

    def test_a_bucket_whose_profile_is_missing(self, built: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
        engine_set = self.planted(built, tmp_path)
        replant(engine_set, "dit_cond", *plan_files(built["one-bucket"], "dit_cond"))
        report = self.verify(built, engine_set)
        bad = failed(report)
        profile = next(c for c in report.checks if c.name == "profiles: dit_cond")
        assert profile.status is Status.FAIL and "profile 1 (256x384) is not in the plan" in profile.detail
        assert {n for n in bad if n.startswith("dit")} == {"dit_cond@256x384 T=7", "dit_cond@256x384 T=64"}
        assert {"generate@256x384", "timing"} <= bad  # requests there fail as checks, not as a crash
        # The first bucket's profile is in the plan: it still runs, and matches the reference.
        report = self.verify(built, engine_set, buckets=("256x256",))
        assert {c.name for c in report.failures} == {"profiles: dit_cond"}

    def test_a_manifest_without_the_profile(self, built: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
        """The manifest itself lacks the bucket's profile: the structure check names it, nothing runs."""
        engine_set = self.planted(built, tmp_path)
        manifest = Manifest.load(engine_set)
        entry = manifest.engines["dit_uncond"]
        entry = dataclasses.replace(entry, profiles=entry.profiles[:1])
        dataclasses.replace(manifest, engines={**manifest.engines, "dit_uncond": entry}).save(engine_set)
        report = self.verify(built, engine_set)
        structure = next(c for c in report.checks if c.name == "structure")
        assert structure.status is Status.FAIL and "bucket 256x384 has no dit_uncond profile" in structure.detail
        assert {c.status for c in report.checks if c.kind.value == "engine"} == {Status.SKIP}
        assert (engine_set / MANIFEST_FILE).is_file()
