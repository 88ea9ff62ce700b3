"""The TensorRT backend (datacenter TensorRT and TensorRT-RTX through one adapter).

- Persistent device buffers, bound once: every tensor of every engine gets a buffer sized for the largest shape
  its profiles admit, and tensors that flow between engines share one (the latents feed both DiTs, the sampler
  and — viewed as [B, GH, GW, C] — the VAE).
- One activation-memory pool for all engines: they run one after another on one stream, so each context borrows
  the same scratch memory (TensorRT's user-managed allocation), sized for the hungriest profile.
- One CUDA graph per (engine, profile, input shapes): the first call at a text length captures it, later calls
  replay it; a bounded cache per engine keeps the most recent.
- The loop never leaves the GPU: per step the timestep, guidance and step size are copied from page-locked host
  memory, then dit_cond, dit_uncond and the sampler engine (CFG blend + Euler update) replay; the host
  synchronizes once per batch of images, after the VAE. Per-step times come from CUDA events.

Nothing here can run on the machines this project is developed on (no GPU TensorRT can use): it is type-checked
against the datacenter API and exercised against a fake GPU in the tests, which runs each plan's ONNX graph.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ideogram_trt.core import contracts as io
from ideogram_trt.core.components import Component
from ideogram_trt.core.manifest import EngineEntry, Manifest
from ideogram_trt.core.records import TensorEntry
from ideogram_trt.core.sampling import steps
from ideogram_trt.core.shapes import Sizes
from ideogram_trt.runtime.backend import NUMPY_DTYPES, DenoiseInputs, Generated, StepCallback
from ideogram_trt.runtime.cuda import Cuda, CudaError, CudaRuntime
from ideogram_trt.runtime.lora import no_adapter_feeds

if TYPE_CHECKING:
    import tensorrt as trt

    from ideogram_trt.runtime.lora import LoraFeeds

GRAPHS_PER_ENGINE = 32  # captured CUDA graphs kept per engine (one per text length in use)
LORA_COMBINATIONS_ON_DEVICE = 4  # adapter combinations kept on the device (docs/LORA.md §3)
ITEM_SIZES = {"float32": 4, "float16": 2, "bfloat16": 2, "int32": 4, "int64": 8}


@dataclass
class _Binding:
    name: str
    pointer: int
    nbytes: int
    dtype: str


class _Engine:
    """A deserialized plan, its execution context, its bindings and its captured graphs."""

    def __init__(self, backend: TensorRTBackend, entry: EngineEntry, runtime: trt.Runtime, module: Any) -> None:
        self.entry = entry
        plan = (backend.root / entry.file).read_bytes()
        engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise CudaError(f"{entry.file}: TensorRT could not deserialize the plan (rebuild it for this machine)")
        self.engine: trt.ICudaEngine = engine
        strategy = module.ExecutionContextAllocationStrategy.USER_MANAGED
        self.context: trt.IExecutionContext = engine.create_execution_context(strategy)
        self.profile: int | None = None
        self.graphs: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self.inputs = [spec.name for spec in entry.inputs]

    def scratch_bytes(self) -> int:
        return max(
            int(self.engine.get_device_memory_size_for_profile_v2(i))
            for i in range(self.engine.num_optimization_profiles)
        )

    def max_shape(self, name: str) -> list[int]:
        shapes = [profile.shapes[name].max for profile in self.entry.profiles if name in profile.shapes]
        if shapes:
            return [max(dims) for dims in zip(*shapes, strict=True)]
        return self.output_max_shape(name)

    def output_max_shape(self, name: str) -> list[int]:
        """Outputs have no profile: take the engine's shape with every input at its largest."""
        sizes = Sizes.bind([(entry.shape, self.max_shape(entry.name)) for entry in self.entry.inputs])
        return list(sizes.resolve(self.entry.output(name).shape))

    def shapes(self, sizes: Sizes) -> dict[str, tuple[int, ...]]:
        """The input shapes to set for one call at ``sizes``."""
        return {spec.name: sizes.resolve(spec.shape) for spec in self.entry.inputs}


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, root: Path, manifest: Manifest, cuda: Cuda | None = None, module: Any = None) -> None:
        from ideogram_trt.engines.tensorrt_adapter import load_tensorrt

        self.root, self.manifest = root, manifest
        self.cuda: Cuda = cuda or CudaRuntime()
        self.module: Any = module or load_tensorrt(manifest.flavor)
        logger = self.module.Logger(self.module.Logger.WARNING)
        self.runtime: trt.Runtime = self.module.Runtime(logger)
        self.stream = self.cuda.stream()
        self.engines = {e.name: _Engine(self, e, self.runtime, self.module) for e in manifest.engines.values()}
        # One scratch pool for every context: they never run at the same time.
        self.scratch_bytes = max(engine.scratch_bytes() for engine in self.engines.values())
        self.scratch = self.cuda.malloc(self.scratch_bytes)
        for engine in self.engines.values():
            engine.context.set_device_memory(self.scratch, self.scratch_bytes)
        self.buffers: dict[str, _Binding] = {}
        for name, engine in self.engines.items():
            for spec in [*engine.entry.inputs, *engine.entry.outputs]:
                self._bind(name, engine, spec)
        self._staging: dict[str, np.ndarray] = {}
        self._events: list[Any] = []  # reused by every request (created on first need, never per call)
        # LoRA (docs/LORA.md §3): recent adapter combinations stay on the device; switching to one is a device-side
        # copy into the conditional DiT's factor inputs, and a new one is uploaded once.
        self._lora_on_device: OrderedDict[tuple[Any, ...], dict[str, _Binding]] = OrderedDict()
        self._lora_bound: tuple[Any, ...] | None = None  # the combination in the engines' factor buffers
        self._no_adapter = no_adapter_feeds(manifest)  # a LoRA-ready set's inputs when a call names no adapter

    def device_bytes(self) -> int:
        """Device memory this backend holds: its bound buffers, the shared scratch pool and cached LoRA factors
        (plans' weights are held by TensorRT on top of this)."""
        cached = sum(b.nbytes for copies in self._lora_on_device.values() for b in copies.values())
        return self.scratch_bytes + cached + sum(binding.nbytes for binding in self.buffers.values())

    def _use_lora(self, engine: str, feeds: LoraFeeds) -> None:
        """Put ``feeds`` in ``engine``'s factor inputs: nothing to do when they are there already, a device copy
        when they are cached, else one upload into the cache first (the oldest combination is freed)."""
        if self._lora_bound == feeds.key:
            return
        if not feeds.key:  # no adapter: rank-1 zeros, uploaded straight into the engine's inputs (no cache entry)
            for name, array in feeds.arrays.items():
                self._upload(self._buffer_name(engine, name), array)
            self._lora_bound = feeds.key
            return
        copies = self._lora_on_device.get(feeds.key)
        if copies is None:
            copies = {}
            for name, array in feeds.arrays.items():
                binding = _Binding(name, self.cuda.malloc(max(array.nbytes, 1)), array.nbytes, str(array.dtype))
                self.cuda.upload(binding.pointer, self._stage(f"lora:{name}", array), self.stream)
                copies[name] = binding
            self._lora_on_device[feeds.key] = copies
            while len(self._lora_on_device) > LORA_COMBINATIONS_ON_DEVICE:
                for old in self._lora_on_device.popitem(last=False)[1].values():
                    self.cuda.free(old.pointer)
        else:
            self._lora_on_device.move_to_end(feeds.key)
        for name, cached in copies.items():
            target = self.buffers[self._buffer_name(engine, name)]
            if cached.nbytes > target.nbytes:
                raise CudaError(f"{name}: {cached.nbytes} bytes exceed the engine's largest rank ({target.nbytes})")
            self.cuda.copy(target.pointer, cached.pointer, cached.nbytes, self.stream)
        self._lora_bound = feeds.key

    # --- buffers ------------------------------------------------------------------------------------------------

    def _buffer_name(self, engine: str, tensor: str) -> str:
        # The VAE reads the latents as [B, GH, GW, C]: the same bytes as [B, N, C] (core.contracts).
        return self.engines[engine].entry.graph.spec.buffer(tensor)

    def _bind(self, engine_name: str, engine: _Engine, spec: TensorEntry) -> None:
        name = self._buffer_name(engine_name, spec.name)
        nbytes = int(np.prod(engine.max_shape(spec.name))) * ITEM_SIZES[spec.dtype]
        binding = self.buffers.get(name)
        if binding is None or binding.nbytes < nbytes:
            binding = _Binding(name, self.cuda.malloc(nbytes), nbytes, spec.dtype)
            if name in self.buffers:  # grow: the engines bound to the old pointer are rebound below
                self.cuda.free(self.buffers[name].pointer)
            self.buffers[name] = binding
            if name == io.VELOCITY_UNCOND:  # read (times zero) when guidance is 1 and the unconditional DiT is skipped
                self.cuda.upload(binding.pointer, np.zeros(nbytes // 4, dtype=np.float32), self.stream)
            for other_name, other in self.engines.items():
                for other_spec in [*other.entry.inputs, *other.entry.outputs]:
                    if self._buffer_name(other_name, other_spec.name) == name:
                        other.context.set_tensor_address(other_spec.name, binding.pointer)
        engine.context.set_tensor_address(spec.name, binding.pointer)

    def _stage(self, name: str, array: np.ndarray) -> np.ndarray:
        """Copy into a page-locked host buffer (kept per name), so the upload is asynchronous."""
        staging = self._staging.get(name)
        if staging is None or staging.nbytes < array.nbytes:
            staging = self.cuda.host_array((max(array.nbytes, 1),), np.uint8)
            self._staging[name] = staging
        view = staging[: array.nbytes].view(array.dtype).reshape(array.shape)
        view[...] = array
        return view

    def _upload(self, buffer: str, array: np.ndarray, staged: str | None = None) -> None:
        binding = self.buffers[buffer]
        dtype = NUMPY_DTYPES.get(binding.dtype)
        data = array if dtype is None else np.ascontiguousarray(array, dtype=dtype)
        if data.nbytes > binding.nbytes:
            raise CudaError(f"{buffer}: {data.nbytes} bytes exceed the engines' largest shape ({binding.nbytes})")
        self.cuda.upload(binding.pointer, self._stage(staged or buffer, data), self.stream)

    # --- launching -----------------------------------------------------------------------------------------------

    def _launch(self, engine_name: str, shapes: dict[str, tuple[int, ...]], profile: int) -> None:
        """Replay the CUDA graph for these shapes, capturing it on first use."""
        engine = self.engines[engine_name]
        key = (profile, *sorted(shapes.items()))
        graph = engine.graphs.get(key)
        if graph is None:
            self._select(engine, profile, shapes)
            # One plain enqueue first: it flushes shape-dependent setup that must not land in the graph.
            if not engine.context.execute_async_v3(self.stream):
                raise CudaError(f"{engine_name}: TensorRT enqueue failed for shapes {shapes}")
            self.cuda.begin_capture(self.stream)
            engine.context.execute_async_v3(self.stream)
            if engine.entry.graph is Component.SAMPLER:  # the new latents become the loop's, inside the graph
                self.cuda.copy(self.buffers[io.LATENTS].pointer, self.buffers[io.LATENTS_NEXT].pointer,
                               int(np.prod(shapes[io.LATENTS])) * 4, self.stream)  # fmt: skip
            graph = self.cuda.end_capture(self.stream)
            engine.graphs[key] = graph
            while len(engine.graphs) > GRAPHS_PER_ENGINE:
                self.cuda.destroy_graph(engine.graphs.popitem(last=False)[1])
        else:
            engine.graphs.move_to_end(key)
            if engine.profile != profile:  # replaying needs the context on the graph's profile again
                self._select(engine, profile, shapes)
        self.cuda.launch(graph, self.stream)

    def _select(self, engine: _Engine, profile: int, shapes: dict[str, tuple[int, ...]]) -> None:
        """Put the engine's context on ``profile`` with these input shapes."""
        if engine.profile != profile:
            if not engine.context.set_optimization_profile_async(profile, self.stream):
                raise CudaError(f"{engine.entry.name}: TensorRT refused optimization profile {profile}")
            engine.profile = profile  # switching profiles drops the input shapes: they are all set below
        for name, shape in shapes.items():
            # TensorRT refuses (False) a shape outside the selected profile's [min, max] for that input.
            if not engine.context.set_input_shape(name, shape):
                raise CudaError(f"{engine.entry.name}: {name} shape {shape} is outside optimization profile {profile}")

    def _engine_for(self, graph: Component, bucket: str | None) -> tuple[str, int]:
        entry = self.manifest.engine_for(graph, bucket)
        profile = entry.profile_for(bucket).index if bucket is not None else 0
        return entry.name, profile

    # --- the protocol ---------------------------------------------------------------------------------------------

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {io.INPUT_IDS: input_ids, io.ATTENTION_MASK: attention_mask}
        return self.run_engine(Component.TEXT_ENCODER, None, feeds)[io.TEXT_HIDDEN]

    def _host_output(self, buffer: str, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        kind = np.float16 if dtype == "bfloat16" else NUMPY_DTYPES[dtype]
        staged = self._stage(f"out:{buffer}", np.empty(shape, dtype=kind))
        self.cuda.download(staged, self.buffers[buffer].pointer, self.stream)
        if dtype == "bfloat16":  # bf16 has no numpy type: reinterpret the bytes
            import ml_dtypes

            bf16: np.ndarray = staged.view(ml_dtypes.bfloat16)
            return bf16
        return staged

    def run_engine(
        self, graph: Component, bucket: str | None, feeds: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """One launch of one engine on its bucket's profile (``verify``), through the same buffers, profile
        selection and captured graph a request uses; one synchronization."""
        name, profile = self._engine_for(graph, bucket)
        engine = self.engines[name]
        sizes = Sizes.bind([(spec.shape, feeds[spec.name].shape) for spec in engine.entry.inputs])
        for spec in engine.entry.inputs:
            self._upload(self._buffer_name(name, spec.name), feeds[spec.name])
        self._lora_bound = None  # a direct call may have written the factor inputs
        self._launch(name, engine.shapes(sizes), profile)
        outputs = {
            spec.name: self._host_output(self._buffer_name(name, spec.name), sizes.resolve(spec.shape), spec.dtype)
            for spec in engine.entry.outputs
        }
        self.cuda.synchronize(self.stream)
        return {key: value.copy() for key, value in outputs.items()}

    def plan_profiles(self, name: str) -> list[dict[str, tuple[tuple[int, ...], ...]]]:
        """The optimization profiles the plan itself holds (min, opt, max per input), as TensorRT reports them:
        what ``verify`` compares with the manifest's."""
        engine = self.engines[name].engine

        def ranges(tensor: str, index: int) -> tuple[tuple[int, ...], ...]:
            shapes = engine.get_tensor_profile_shape(tensor, index)  # min, opt, max (Dims: len and [] only)
            return tuple(tuple(int(shape[k]) for k in range(len(shape))) for shape in shapes)

        inputs = [spec.name for spec in self.engines[name].entry.inputs]
        return [{t: ranges(t, i) for t in inputs} for i in range(engine.num_optimization_profiles)]

    def generate(self, inputs: DenoiseInputs, on_step: StepCallback | None = None) -> Generated:
        bucket = inputs.bucket.name
        batch, tokens, channels = inputs.latents.shape
        text = inputs.text_hidden.shape[1]
        schedule = inputs.schedule
        cond, cond_profile = self._engine_for(Component.DIT_COND, bucket)
        sampler, sampler_profile = self._engine_for(Component.SAMPLER, bucket)
        has_uncond = self.manifest.has(Component.DIT_UNCOND)
        uncond, uncond_profile = self._engine_for(Component.DIT_UNCOND, bucket) if has_uncond else ("", 0)

        self._upload(io.LATENTS, inputs.latents)
        self._upload(io.TEXT_HIDDEN, inputs.text_hidden)
        lora = inputs.lora or self._no_adapter
        if lora is not None:
            self._use_lora(cond, lora)
        self._upload(io.ROPE_COS, inputs.rope_cond[0])
        self._upload(io.ROPE_SIN, inputs.rope_cond[1])
        if has_uncond:
            self._upload(self._buffer_name(uncond, io.ROPE_COS), inputs.rope_uncond[0])
            self._upload(self._buffer_name(uncond, io.ROPE_SIN), inputs.rope_uncond[1])
        # Every step's scalars, staged once in page-locked memory.
        timesteps = np.repeat(schedule.t[:, None], batch, axis=1).astype(np.float32)
        latent_shape = (batch, tokens, channels)
        rank = None if lora is None else lora.rank
        sizes = Sizes(batch=batch, text=text, grid=inputs.bucket.grid, lora_rank=rank)
        cond_shapes = self.engines[cond].shapes(sizes)
        uncond_shapes = self.engines[uncond].shapes(sizes) if has_uncond else {}
        sampler_shapes = self.engines[sampler].shapes(sizes)
        while len(self._events) < schedule.steps + 2:
            self._events.append(self.cuda.event())
        events = self._events[: schedule.steps + 2]
        self.cuda.record(events[0], self.stream)
        for step in steps(schedule):  # core.sampling: the sampler engine runs its euler_update
            j = step.index
            self._upload(io.TIMESTEP, timesteps[j], staged=f"t{j}")
            self._launch(cond, cond_shapes, cond_profile)
            if has_uncond and step.needs_uncond:
                self._launch(uncond, uncond_shapes, uncond_profile)
            self._upload(io.GUIDANCE, np.array([step.guidance], dtype=np.float32), staged=f"g{j}")
            self._upload(io.STEP, schedule.dt[j : j + 1], staged=f"dt{j}")
            self._launch(sampler, sampler_shapes, sampler_profile)
            self.cuda.record(events[j + 1], self.stream)

        vae, vae_profile = self._engine_for(Component.VAE_DECODER, bucket)
        self._launch(vae, self.engines[vae].shapes(sizes), vae_profile)
        self.cuda.record(events[-1], self.stream)
        latents = self._host_output(io.LATENTS, latent_shape, "float32")
        image = self.engines[vae].entry.output(io.IMAGE)
        images = self._host_output(self._buffer_name(vae, io.IMAGE), sizes.resolve(image.shape), image.dtype)
        self.cuda.synchronize(self.stream)  # the one synchronization of this batch

        seconds = [self.cuda.elapsed_ms(events[j], events[j + 1]) / 1000 for j in range(schedule.steps)]
        if on_step is not None:
            for j, value in enumerate(seconds):
                on_step(j, value)
        vae_seconds = self.cuda.elapsed_ms(events[-2], events[-1]) / 1000
        return Generated(latents.copy(), images.copy(), seconds, vae_seconds)
