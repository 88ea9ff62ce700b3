"""The TensorRT backend on a FAKE GPU (ideogram_trt/testing/fake_tensorrt.py): no GPU here can run a plan, so
each plan's own ONNX graph runs in ONNX Runtime over fake device memory; the backend's buffers, scratch pool,
CUDA-graph capture and replay, on-device loop (sampler engine) and single synchronization run as written.

The engine set is real: built by TensorRT-RTX from fp32 graphs (ONNX Runtime has no bf16 kernels), so the
fake's results must equal the ONNX Runtime backend's on the same graphs, bit for bit.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from ideogram_trt.core import rope
from ideogram_trt.core.manifest import Manifest
from ideogram_trt.core.tokenization import PromptTokenizer
from ideogram_trt.runtime import Pipeline
from ideogram_trt.runtime.tensorrt_backend import TensorRTBackend
from ideogram_trt.testing.fake_tensorrt import FakeCuda, FakeTensorRT

PROMPTS = ['{"subject":"a lighthouse at dusk","style":"oil painting"}', "a cat"]


def fake_tensorrt_pipeline(engine_set: Path) -> tuple[Pipeline, FakeCuda, FakeTensorRT]:
    manifest = Manifest.load(engine_set)
    plans = {}
    for entry in manifest.engines.values():
        folder = engine_set / ("sampler" if entry.graph == "sampler" else "onnx")
        # The plan's optimization profiles, as the build recorded them (TensorRT reads them from the plan).
        assert [profile.index for profile in entry.profiles] == list(range(len(entry.profiles)))
        profiles = [
            {name: (tuple(r.min), tuple(r.opt), tuple(r.max)) for name, r in profile.shapes.items()}
            for profile in entry.profiles
        ]
        plans[entry.sha256] = (folder / f"{entry.graph.value}.onnx", profiles)
        assert hashlib.sha256((engine_set / entry.file).read_bytes()).hexdigest() == entry.sha256
    cuda = FakeCuda()
    module = FakeTensorRT(cuda, plans)
    backend = TensorRTBackend(engine_set, manifest, cuda=cuda, module=module)
    tokenizer = PromptTokenizer.from_dir(engine_set / manifest.tokenizer)
    return Pipeline(engine_set, manifest, backend, tokenizer), cuda, module


class TestTensorRTBackendOnAFakeGpu:
    @pytest.fixture(scope="class")
    def engine_sets(self, fake_gpu_sets: tuple[Path, Path]) -> tuple[Path, Path]:
        return fake_gpu_sets  # fp8, fp32 graphs, max batch 2 (conftest; shared with test_verify.py)

    def test_same_images_as_onnx_runtime(self, engine_sets: tuple[Path, Path]) -> None:
        rtx, ort = engine_sets
        pipe, _, _ = fake_tensorrt_pipeline(rtx)
        reference = Pipeline.from_engines(ort)
        for preset in ("V4_TURBO_12", "V4_FAST_20"):  # FAST: guidance 1, the unconditional DiT is skipped
            kwargs = {"bucket": "256x384", "preset": preset, "seed": 3, "num_images": 2}
            ours, theirs = pipe(PROMPTS, **kwargs), reference(PROMPTS, **kwargs)
            assert np.array_equal(ours.latents, theirs.latents), preset
            assert np.array_equal(ours.images, theirs.images), preset
            assert len(ours.timings.steps) == 2 * ours.schedule.steps

    def test_more_prompts_than_the_max_batch_are_encoded_in_chunks(self, engine_sets: tuple[Path, Path]) -> None:
        """The text encoder's profiles admit the set's max batch (2) of prompts: three are encoded two, then one,
        and each image is the one its prompt makes alone (the oracle: ONNX Runtime, one prompt per request)."""
        rtx, ort = engine_sets
        pipe, _, _ = fake_tensorrt_pipeline(rtx)
        reference = Pipeline.from_engines(ort)
        prompts = [*PROMPTS, "a dog on a skateboard"]
        ours = pipe(prompts, bucket="256x256", preset="V4_TURBO_12", seed=5, steps=2)
        for k, prompt in enumerate(prompts):
            alone = reference(prompt, bucket="256x256", preset="V4_TURBO_12", seed=5 + k, steps=2)
            error = np.linalg.norm(ours.latents[k] - alone.latents[0]) / np.linalg.norm(alone.latents[0])
            assert error < 1e-5, (prompt, error)

    def test_random_guidance_loop_equals_the_host_loop(self, engine_sets: tuple[Path, Path]) -> None:
        """The TensorRT loop (steps of core.sampling, the update in the sampler engine) against the host loop
        (core.sampling.denoise) on random latents, text rows and a per-step guidance list with 1s in it (the
        unconditional DiT skipped on those steps): bit for bit (tests/test_sampling.py: the host update equals
        the sampler graph)."""
        import dataclasses

        from ideogram_trt.core.buckets import Bucket
        from ideogram_trt.core.schedule import get_preset, preset_schedule
        from ideogram_trt.runtime.backend import DenoiseInputs

        rtx, ort = engine_sets
        pipe, _, _ = fake_tensorrt_pipeline(rtx)
        reference = Pipeline.from_engines(ort)
        rng = np.random.default_rng(11)
        bucket = Bucket(256, 384)
        grid_h, grid_w = bucket.grid
        text = 9
        guidance = np.array([5.5, 1.0, 7.25, -0.5, 1.0, 3.0], dtype=np.float32)
        schedule = dataclasses.replace(preset_schedule(get_preset("V4_TURBO_12"), 256, 384), guidance=guidance)
        schedule = dataclasses.replace(schedule, t=schedule.t[:6], t_next=schedule.t_next[:6], dt=schedule.dt[:6])
        manifest = pipe.manifest
        inputs = DenoiseInputs(
            latents=rng.standard_normal((2, grid_h * grid_w, manifest.model.latent_channels), dtype=np.float32),
            text_hidden=rng.standard_normal((2, text, manifest.model.hidden_size), dtype=np.float32),
            rope_cond=pipe._cond_tables(grid_h, grid_w, text),
            rope_uncond=pipe._image_rope(grid_h, grid_w),
            bucket=bucket,
            schedule=schedule,
        )
        ours = pipe.backend.generate(inputs)
        theirs = reference.backend.generate(inputs)
        assert np.array_equal(ours.latents, theirs.latents)
        assert len(ours.step_seconds) == 6

    def test_lora_adapters_are_uploads_not_rebuilds(
        self, engine_sets: tuple[Path, Path], tiny_dir: Path, tmp_path: Path
    ) -> None:
        """An adapter is input data (docs/LORA.md §3): with adapters, the fake GPU's images equal ONNX Runtime's
        on the same graphs, bit for bit; a new combination is uploaded once into the device cache (its factors
        allocated), a cached one returns by a device copy (nothing allocated), no adapter writes zeros into the
        engine's inputs; no plan changes."""
        import json

        from test_lora import KOHYA_MODULES, write_adapter

        rtx, ort = engine_sets
        config = json.loads((tiny_dir / "transformer" / "config.json").read_text())
        layers = list(range(config["num_layers"]))
        a = write_adapter(tmp_path / "a.safetensors", config, layers, KOHYA_MODULES, 2, seed=7, kohya_alpha=2.0)
        b = write_adapter(tmp_path / "b.safetensors", config, layers[:1], KOHYA_MODULES[:2], 3, seed=8, kohya_alpha=1.5)
        plans = {name: entry.sha256 for name, entry in Manifest.load(rtx).engines.items()}
        pipe, cuda, _ = fake_tensorrt_pipeline(rtx)
        reference = Pipeline.from_engines(ort)
        # Not bit-equal with adapters: the fake's factor inputs are views into its device memory, and ONNX Runtime's
        # CPU GEMMs come out ≤ 4e-6 apart on them; in this fp8 set that can flip one activation's E4M3 rounding,
        # a jump of a few percent in that token (seen: 1 of 256 tokens). So: 1e-3 relative, images ≥ 50 dB.
        kwargs = {"bucket": "256x256", "preset": "V4_TURBO_12", "seed": 3, "steps": 1}
        factors = 12  # A and B for six targets
        for loras, allocated in (([(a, 1.0)], factors), ([(b, 0.5), (a, 0.7)], factors), ([(a, 1.0)], 0), ([], 0)):
            before = cuda.counts["malloc"]
            ours, theirs = pipe(PROMPTS[1], loras=loras, **kwargs), reference(PROMPTS[1], loras=loras, **kwargs)
            error = float(np.linalg.norm(ours.latents - theirs.latents) / np.linalg.norm(theirs.latents))
            mse = float(np.mean((ours.images.astype(np.float64) - theirs.images.astype(np.float64)) ** 2))
            assert error <= 1e-3 and (mse == 0 or 10 * np.log10(255**2 / mse) >= 50), (loras, error, mse)
            assert cuda.counts["malloc"] - before == allocated, loras
        plain = reference(PROMPTS[1], **kwargs)
        assert not np.array_equal(plain.latents, reference(PROMPTS[1], loras=[(a, 1.0)], **kwargs).latents)
        assert {name: entry.sha256 for name, entry in Manifest.load(rtx).engines.items()} == plans

    def test_buffers_bound_once_graphs_captured_once_one_sync_per_batch(self, engine_sets: tuple[Path, Path]) -> None:
        rtx, _ = engine_sets
        pipe, cuda, _ = fake_tensorrt_pipeline(rtx)
        allocations = cuda.counts["malloc"]
        backend = pipe.backend
        assert isinstance(backend, TensorRTBackend)
        # One scratch pool, lent to every context.
        assert {engine.context.scratch for engine in backend.engines.values()} == {backend.scratch}

        pipe(PROMPTS[1], bucket="256x256", preset="V4_TURBO_12", seed=0)
        steps = 12
        # encode: 1 sync; generate: 1 sync for the whole batch (12 steps and the VAE), not one per step.
        assert cuda.counts["sync"] == 2
        # Captured on first use: text encoder, dit_cond, dit_uncond, sampler, VAE — one graph each.
        assert cuda.counts["capture"] == 5
        assert cuda.counts["malloc"] == allocations  # nothing allocated per request
        launches = cuda.counts["launch"]
        assert launches == 1 + steps * 3 + 1
        assert cuda.counts["event"] == steps + 2  # timing events: made once, reused by later requests

        pipe(PROMPTS[1], bucket="256x256", preset="V4_TURBO_12", seed=1)
        assert cuda.counts["capture"] == 5  # same shapes: replayed, not captured again
        assert cuda.counts["launch"] == 2 * launches and cuda.counts["sync"] == 4
        assert cuda.counts["event"] == steps + 2
        # One image RoPE table per bucket serves both DiTs and every request; the conditional tables built from
        # it and the text table equal the tables of the whole sequence, bit for bit.
        assert pipe._image_rope.cache_info().misses == 1
        for length in (1, 7, pipe.manifest.max_text_tokens):
            whole = rope.rope_tables(rope.sequence_positions(length, 16, 16), pipe._inv_freq, pipe._mrope_section)
            for ours, theirs in zip(pipe._cond_tables(16, 16, length), whole, strict=True):
                assert np.array_equal(ours, theirs)
        pipe(PROMPTS[0], bucket="256x256", preset="V4_TURBO_12", seed=1)
        # A new text length: new graphs for the text encoder and the conditional DiT only.
        assert cuda.counts["capture"] == 7
        assert cuda.counts["malloc"] == allocations
        assert len(backend.engines["dit_cond"].graphs) == 2

    def test_each_bucket_runs_on_its_profile_and_warm_requests_allocate_nothing(
        self, engine_sets: tuple[Path, Path]
    ) -> None:
        """One plan per graph with one optimization profile per bucket (256x256: 0, 256x384: 1): every engine of a
        request runs on its bucket's profile — the fake, like TensorRT, refuses a shape outside the selected
        profile — and once both buckets are warm, identical requests allocate no device or page-locked host
        memory."""
        rtx, _ = engine_sets
        pipe, cuda, _ = fake_tensorrt_pipeline(rtx)
        backend = pipe.backend
        assert isinstance(backend, TensorRTBackend)
        bucketed = {name: e for name, e in backend.engines.items() if e.entry.graph != "text_encoder"}
        assert {name: e.engine.num_optimization_profiles for name, e in bucketed.items()} == dict.fromkeys(bucketed, 2)
        expected = {"256x256": 0, "256x384": 1}
        for entry in pipe.manifest.engines.values():
            if entry.graph != "text_encoder":
                assert {b: entry.profile_for(b).index for b in expected} == expected, entry.name
        # A 256x384 latent shape is outside profile 0: TensorRT (and the fake) refuse it there.
        dit = backend.engines["dit_cond"].context
        latents = tuple(backend.engines["dit_cond"].entry.profiles[1].shapes["latents"].min)
        assert dit.profile == 0 and not dit.set_input_shape("latents", latents)  # type: ignore[attr-defined]
        dit.refused.clear()  # type: ignore[attr-defined]

        kwargs = {"preset": "V4_TURBO_12", "num_images": 2}
        counts: list[tuple[int, int]] = []
        for bucket, profile in [*expected.items(), *expected.items(), *expected.items()]:
            runs = {name: len(e.engine.ran_on) for name, e in bucketed.items()}  # type: ignore[attr-defined]
            pipe(PROMPTS, bucket=bucket, seed=1, **kwargs)
            for name, engine in bucketed.items():
                ran_on = engine.engine.ran_on[runs[name] :]  # type: ignore[attr-defined]
                assert ran_on and set(ran_on) == {profile}, (bucket, name, ran_on)
                assert engine.context.profile == profile  # type: ignore[attr-defined]
            counts.append((cuda.counts["malloc"], cuda.counts["host"]))
        assert not any(e.context.refused for e in backend.engines.values())  # type: ignore[attr-defined]
        # Warm after one request per bucket: the second and third rounds allocate nothing, on device or host.
        assert counts[2:] == [counts[1]] * 4, counts
        assert counts[1][1] > 0  # the page-locked staging buffers were made (in warm-up) and counted

    def test_evicted_graphs_are_destroyed_and_recaptured(
        self, engine_sets: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        rtx, _ = engine_sets
        kwargs = {"bucket": "256x256", "preset": "V4_INSTANT_8", "seed": 5}
        expected = [fake_tensorrt_pipeline(rtx)[0](prompt, **kwargs).latents for prompt in PROMPTS]
        monkeypatch.setattr("ideogram_trt.runtime.tensorrt_backend.GRAPHS_PER_ENGINE", 1)
        pipe, cuda, _ = fake_tensorrt_pipeline(rtx)
        for _ in range(2):  # two text lengths take turns in a one-graph cache
            for prompt, latents in zip(PROMPTS, expected, strict=True):
                assert np.array_equal(pipe(prompt, **kwargs).latents, latents)
        # Each text-length switch evicts the text encoder's and dit_cond's graph: 3 switches x 2 engines.
        assert cuda.counts["destroy"] == 6
        assert all(len(engine.graphs) <= 1 for engine in pipe.backend.engines.values())  # type: ignore[attr-defined]
