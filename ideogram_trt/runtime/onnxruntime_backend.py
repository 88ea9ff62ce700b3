"""The ONNX Runtime backend: one session per graph (dynamic shapes serve every bucket), the loop on the host.

CPU everywhere; the CUDA execution provider where onnxruntime-gpu is installed. The Euler loop is
``core.sampling.denoise`` on numpy float32 arrays.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ideogram_trt.core import contracts as io
from ideogram_trt.core.buckets import Bucket
from ideogram_trt.core.components import Component
from ideogram_trt.core.manifest import EngineEntry, Manifest
from ideogram_trt.core.sampling import denoise
from ideogram_trt.runtime.backend import NUMPY_DTYPES, DenoiseInputs, Generated, StepCallback
from ideogram_trt.runtime.lora import no_adapter_feeds

# ONNX Runtime 1.30's QDQ transformer turns an FP8 Q/DQ + MatMul unit into MatMulIntegerToFloat, which takes no
# FP8 input, and then refuses the whole graph (seen on the H200 machine; 1.32 leaves it alone). Its rewrites are
# for int8 kernels the CPU has; FP8 Q/DQ runs as written either way (docs/VERIFY.md §6).
DISABLED_OPTIMIZERS = ["QDQSelectorActionTransformer"]


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, root: Path, manifest: Manifest, threads: int | None = None) -> None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        self._sessions: dict[Component, object] = {}
        self._inputs: dict[Component, dict[str, type]] = {}
        for entry in manifest.engines.values():
            self._sessions[entry.graph] = ort.InferenceSession(
                str(root / entry.file), options, providers=providers, disabled_optimizers=DISABLED_OPTIMIZERS
            )
            self._inputs[entry.graph] = _input_dtypes(entry)
        self.providers = providers
        self._no_adapter = no_adapter_feeds(manifest)  # a LoRA-ready set's inputs when a call names no adapter

    def _run(self, graph: Component, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        return next(iter(self.run_engine(graph, None, feeds).values()))

    def run_engine(
        self, graph: Component, bucket: str | None, feeds: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """One session run; the graphs are dynamic, so ``bucket`` does not choose anything here."""
        dtypes = self._inputs[graph]
        session = self._sessions[graph]
        cast: dict[str, np.ndarray] = {
            name: np.ascontiguousarray(value, dtype=dtypes[name]) for name, value in feeds.items()
        }
        names = [spec.name for spec in session.get_outputs()]  # type: ignore[attr-defined]
        return dict(zip(names, session.run(names, cast), strict=True))  # type: ignore[attr-defined]

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self._run(Component.TEXT_ENCODER, {io.INPUT_IDS: input_ids, io.ATTENTION_MASK: attention_mask})

    def generate(self, inputs: DenoiseInputs, on_step: StepCallback | None = None) -> Generated:
        steps: list[float] = []

        def report(index: int, seconds: float) -> None:
            steps.append(seconds)
            if on_step is not None:
                on_step(index, seconds)

        latents = self.denoise(inputs, report)
        start = time.perf_counter()
        images = self.decode(latents, inputs.bucket)
        return Generated(latents, images, steps, time.perf_counter() - start)

    def denoise(self, inputs: DenoiseInputs, on_step: StepCallback | None = None) -> np.ndarray:
        batch = inputs.latents.shape[0]
        cos_c, sin_c = inputs.rope_cond
        cos_u, sin_u = inputs.rope_uncond
        has_uncond = Component.DIT_UNCOND in self._sessions

        lora = inputs.lora or self._no_adapter
        side = {} if lora is None else lora.arrays

        def cond(z: np.ndarray, t: float) -> np.ndarray:
            feeds = {
                io.LATENTS: z,
                io.TEXT_HIDDEN: inputs.text_hidden,
                io.TIMESTEP: np.full(batch, t, dtype=np.float32),
                io.ROPE_COS: cos_c,
                io.ROPE_SIN: sin_c,
                **side,
            }
            return self._run(Component.DIT_COND, feeds)

        def uncond(z: np.ndarray, t: float) -> np.ndarray:
            feeds = {
                io.LATENTS: z,
                io.TIMESTEP: np.full(batch, t, dtype=np.float32),
                io.ROPE_COS: cos_u,
                io.ROPE_SIN: sin_u,
            }
            return self._run(Component.DIT_UNCOND, feeds)

        last = [time.perf_counter()]

        def step_done(index: int, _z: np.ndarray) -> None:
            now = time.perf_counter()
            if on_step is not None:
                on_step(index, now - last[0])
            last[0] = now

        return denoise(inputs.latents, inputs.schedule, cond, uncond if has_uncond else None, step_done)

    def decode(self, latents: np.ndarray, bucket: Bucket) -> np.ndarray:
        grid_h, grid_w = bucket.grid
        packed = latents.reshape(latents.shape[0], grid_h, grid_w, latents.shape[-1])
        return self._run(Component.VAE_DECODER, {io.LATENTS: packed}).astype(np.float32)


def _input_dtypes(entry: EngineEntry) -> dict[str, type]:
    return {spec.name: NUMPY_DTYPES[spec.dtype] for spec in entry.inputs}
