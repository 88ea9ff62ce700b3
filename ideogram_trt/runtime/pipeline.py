"""``Pipeline.from_engines(dir)`` → ``pipe(prompt, ...)``: Ideogram 4 over an engine set, no PyTorch.

Per request: tokenize (the checkpoint's chat template, left padding, 2048-token limit), run the text encoder once
for all prompts, then per prompt run the LogitNormal loop for its images at the prompt's exact text length (the
mask-free engine; docs/MODEL.md §4.6), and decode. Host-side math is ``core``: schedule (float64,
docs/MODEL.md §5), RoPE tables (float32), seeded noise.

Seeds: the k-th image of a request (prompt-major: all images of the first prompt, then the second's) starts from
``core.noise.initial_latents(seed + k)``, so every image can be reproduced alone with its own seed.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ideogram_trt.core import rope
from ideogram_trt.core.buckets import Bucket, nearest
from ideogram_trt.core.components import Component
from ideogram_trt.core.digest import file_digest
from ideogram_trt.core.errors import EngineOutputError, InputError
from ideogram_trt.core.manifest import (
    MANIFEST_FILE,
    EngineSetError,
    Manifest,
    RuntimeEnv,
    bucket_refusal,
    require_runnable,
)
from ideogram_trt.core.noise import initial_latents
from ideogram_trt.core.prompts import check_prompt
from ideogram_trt.core.requests import check_guidance, check_images, check_seed, check_steps, whole
from ideogram_trt.core.schedule import (
    DEFAULT_PRESET,
    DEFAULT_TERMINAL,
    PresetName,
    Schedule,
    Terminal,
    get_preset,
    logit_normal_schedule,
)
from ideogram_trt.core.tokenization import PromptTokenizer
from ideogram_trt.runtime.backend import Backend, DenoiseInputs
from ideogram_trt.runtime.lora import Choice, LoraFeeds, LoraLibrary, factor_dtype

DISTILLED_DEFAULT = PresetName.V4_FAST_20  # checkpoints without an unconditional DiT
NO_LORA = (
    "this engine set has no LoRA side path: rebuild it with `build-engines --lora-rank R`, or fold a fixed "
    "adapter into the checkpoint with `ideogram-trt merge-lora`"
)


@dataclass
class Timings:
    """Seconds per stage; ``steps`` has one entry per denoising step of every prompt, in order. ``total`` is the
    whole call, tokenization and the uint8 conversion included."""

    text_encoder: float = 0.0
    steps: list[float] = field(default_factory=list)
    vae: float = 0.0
    total: float = 0.0

    @property
    def denoise(self) -> float:
        return sum(self.steps)


@dataclass
class GenerationResult:
    images: np.ndarray  # uint8 [count, H, W, 3]
    latents: np.ndarray  # float32 [count, N, C], the final latents
    prompts: list[str]  # per image
    seeds: list[int]  # per image
    preset: str
    bucket: Bucket
    schedule: Schedule
    timings: Timings
    engine_set: str  # sha256 of the manifest: names the exact engines that made the images
    loras: list[tuple[str, str, float]] = field(default_factory=list)  # (name, sha256, weight) per adapter used


@dataclass(frozen=True)
class SamplingPlan:
    preset: str
    schedule: Schedule


class Pipeline:
    def __init__(
        self,
        root: Path,
        manifest: Manifest,
        backend: Backend,
        tokenizer: PromptTokenizer,
        adapters: Path | None = None,
        allow_adapter_paths: bool = True,
    ) -> None:
        """``adapters``: a folder of LoRA adapters a request may name (``NAME`` = ``NAME.safetensors``);
        ``allow_adapter_paths``: whether a request may also name an adapter file (a server should not)."""
        self.root, self.manifest, self.backend, self.tokenizer = root, manifest, backend, tokenizer
        self.engine_set_id = file_digest(root / MANIFEST_FILE)
        self.lora: LoraLibrary | None = None
        if manifest.model.lora is not None:
            dtype = factor_dtype(manifest)
            self.lora = LoraLibrary(manifest.model.lora, dtype, str(root), adapters, allow_adapter_paths)
        model = manifest.model
        rope = model.rope
        self._inv_freq = np.asarray([] if rope is None else rope.inv_freq, dtype=np.float32)
        self._mrope_section = () if rope is None else tuple(rope.mrope_section)
        if model.latent_channels is None:  # structure_problems refuses such a set before it gets here
            raise EngineSetError(f"{root}: the manifest's model facts lack latent_channels; rebuild the engine set")
        self._channels = model.latent_channels
        self.has_unconditional = model.has_unconditional
        # RoPE tables are row-wise in the positions, and image positions do not depend on the text (docs/MODEL.md §4.4):
        # one image table per bucket and one text table serve every request (about 40 ms each at 1024²).
        self._image_rope = functools.lru_cache(maxsize=None)(self._image_tables)  # keys: the manifest's buckets

    @classmethod
    def from_engines(
        cls,
        path: str | Path,
        backend: str | None = None,
        env: RuntimeEnv | None = None,
        allow_other_gpu: bool = False,
        adapters: Path | None = None,
        allow_adapter_paths: bool = True,
    ) -> Pipeline:
        """Open an engine set; the backend follows the manifest's flavor unless ``backend`` overrides it.
        ``allow_other_gpu`` runs datacenter TensorRT plans built on another GPU model of the same compute
        capability (refused by default). ``adapters``, ``allow_adapter_paths``: see ``__init__``."""
        from ideogram_trt.runtime.backends import choose_backend

        root = Path(path)
        manifest = Manifest.load(root)
        chosen = choose_backend(root, manifest, backend)  # refuses an unknown name, or a flavor it cannot run
        require_runnable(root, manifest, env or RuntimeEnv.detect(), allow_other_gpu=allow_other_gpu)
        if not manifest.tokenizer or not manifest.has(Component.TEXT_ENCODER):
            raise InputError(f"{root}: this engine set has no text encoder; rebuild it with all four components")
        if adapters is not None and manifest.model.lora is None:
            raise InputError(f"{root}: {NO_LORA}")
        runner = chosen.factory(root, manifest)
        tokenizer = PromptTokenizer.from_dir(root / manifest.tokenizer)
        return cls(root, manifest, runner, tokenizer, adapters, allow_adapter_paths)

    def lora_feeds(self, loras: Sequence[Choice]) -> LoraFeeds | None:
        """The side-path inputs for ``loras`` ((adapter, weight) pairs), every adapter checked against the
        engines; None for a set without the side path (which then refuses any adapter)."""
        if self.lora is None:
            if loras:
                raise InputError(f"{self.root}: {NO_LORA}")
            return None
        return self.lora.feeds(loras)

    # --- request resolution ---------------------------------------------------------------------------------

    def resolve_bucket(
        self, height: int | None, width: int | None, bucket: str | None = None, snap: bool = False
    ) -> Bucket:
        buckets = self.manifest.bucket_objects
        if bucket is not None:
            if height is not None or width is not None:
                raise InputError("give a bucket name or --height/--width, not both")
            if bucket not in self.manifest.buckets:
                raise InputError(f"unknown bucket {bucket!r}: this engine set has {', '.join(self.manifest.buckets)}")
            return Bucket.parse(bucket)
        if height is None and width is None:
            return buckets[0]
        if height is None or width is None:
            raise InputError("give both --height and --width")
        for side, value in (("height", height), ("width", width)):
            if whole(value) is None or value < 1:
                sizes = ", ".join(self.manifest.buckets)
                raise InputError(f"{side} {value!r}: give a positive number of pixels (this engine set has {sizes})")
        for candidate in buckets:
            if (candidate.height, candidate.width) == (height, width):
                return candidate
        if snap:
            return nearest(buckets, height, width, 1)[0]
        try:
            requested = Bucket(height, width)
        except InputError as exc:
            close = ", ".join(b.name for b in nearest(buckets, max(height, 1), max(width, 1)))
            raise InputError(f"{exc}; this engine set has {close} near that") from None
        raise InputError(bucket_refusal(self.manifest, requested) + " (or pass --snap to use the nearest)")

    def sampling_plan(
        self,
        bucket: Bucket,
        preset: str | None = None,
        steps: int | None = None,
        guidance: float | list[float] | None = None,
        terminal: Terminal = DEFAULT_TERMINAL,
    ) -> SamplingPlan:
        """The preset's schedule, changed by ``steps`` and ``guidance``: one guidance value applies to every step;
        a list gives one per step and so sets the step count, which an explicit ``steps`` must then equal."""
        default = DEFAULT_PRESET if self.has_unconditional else DISTILLED_DEFAULT
        chosen = get_preset(preset or default)
        if steps is not None:
            check_steps(steps)
        if guidance is None:
            count = chosen.steps if steps is None else steps
            values = chosen.guidance if count == chosen.steps else (chosen.guidance[0],) * count
        elif isinstance(guidance, int | float):
            values = check_guidance([guidance]) * (chosen.steps if steps is None else steps)
        else:
            values = check_guidance(list(guidance))
            if steps is not None and len(values) != steps:
                raise InputError(
                    f"--guidance gives {len(values)} values but --steps is {steps}: give one value per step, or "
                    "leave --steps out (a guidance list sets the step count)"
                )
        if any(g != 1.0 for g in values) and not self.has_unconditional:
            raise InputError(
                f"{chosen.name.value} uses guidance != 1, which needs the unconditional DiT; this engine set has "
                "none: use V4_FAST_20 or V4_INSTANT_8"
            )
        schedule = logit_normal_schedule(
            len(values), chosen.mu, chosen.std, bucket.height, bucket.width, values, terminal
        )
        return SamplingPlan(chosen.name.value, schedule)

    def step_reports(self, plan: SamplingPlan, prompts: int, num_images: int) -> int:
        """How often a request calls ``on_step``: every step of every batch of images (progress bars' totals)."""
        check_images(num_images, prompts)
        return prompts * len(_chunks(0, num_images, self.manifest.max_batch)) * plan.schedule.steps

    # --- generation -------------------------------------------------------------------------------------------

    def _image_tables(self, grid_h: int, grid_w: int) -> tuple[np.ndarray, np.ndarray]:
        """RoPE cos/sin of a bucket's image tokens: the unconditional DiT's tables and the image rows of the
        conditional one's. Cached, so made read-only: every request shares them."""
        return _read_only(rope.rope_tables(rope.image_positions(grid_h, grid_w), self._inv_freq, self._mrope_section))

    @functools.cached_property
    def _text_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """RoPE cos/sin of text positions 0 … max_text_tokens − 1; a prompt of length T uses the first T rows."""
        positions = rope.text_positions(self.manifest.max_text_tokens)
        return _read_only(rope.rope_tables(positions, self._inv_freq, self._mrope_section))

    def _cond_tables(self, grid_h: int, grid_w: int, text_length: int) -> tuple[np.ndarray, np.ndarray]:
        """The [text | image] tables of one conditional sequence: equal, row for row, to computing them from
        ``rope.sequence_positions``."""
        image = self._image_rope(grid_h, grid_w)
        text = self._text_tables
        cos, sin = (np.concatenate([t[:text_length], i]) for t, i in zip(text, image, strict=True))
        return cos, sin

    def __call__(
        self,
        prompt: str | list[str],
        height: int | None = None,
        width: int | None = None,
        bucket: str | None = None,
        preset: str | None = None,
        seed: int = 0,
        num_images: int = 1,
        steps: int | None = None,
        guidance: float | list[float] | None = None,
        terminal: Terminal | str = DEFAULT_TERMINAL,
        latents: np.ndarray | None = None,
        snap: bool = False,
        on_step: Callable[[int, int, float], None] | None = None,
        loras: Sequence[Choice] = (),
    ) -> GenerationResult:
        """Generate ``num_images`` per prompt. ``latents`` [count, N, C] replaces the seeded noise (to hand two
        implementations the same start). ``on_step(prompt_index, step, seconds)`` reports progress. ``loras``:
        LoRA adapters, (name or file, weight) each, on a LoRA-ready engine set (docs/LORA.md §3)."""
        start = time.perf_counter()
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise InputError("no prompt given")
        for number, text in enumerate(prompts, 1):
            check_prompt(text, f"prompt {number}" if len(prompts) > 1 else "the prompt")
        count = check_images(num_images, len(prompts))
        check_seed(seed, count)
        size = self.resolve_bucket(height, width, bucket, snap)
        plan = self.sampling_plan(size, preset, steps, guidance, Terminal(terminal))
        if latents is None:
            noise = initial_latents(seed, count, size.tokens, self._channels)
        else:
            noise = np.asarray(latents, dtype=np.float32)
            if noise.shape != (count, size.tokens, self._channels):
                raise InputError(f"latents must be {(count, size.tokens, self._channels)}, got {noise.shape}")
            if not np.isfinite(noise).all():
                raise InputError("latents hold NaN or Inf: give finite starting noise")
        side = self.lora_feeds(loras)  # every adapter read and checked before any engine runs
        timings = Timings()

        batch = self.tokenizer.batch(prompts, max_tokens=self.manifest.max_text_tokens)
        t0 = time.perf_counter()
        # The text encoder's profiles admit max_batch prompts at a time: more are encoded in chunks (same padding).
        hidden = np.concatenate(
            [
                self.backend.encode(batch.input_ids[rows], batch.attention_mask[rows])
                for rows in _chunks(0, len(prompts), self.manifest.max_batch)
            ]
        )
        timings.text_encoder = time.perf_counter() - t0

        grid_h, grid_w = size.grid
        uncond_tables = self._image_rope(grid_h, grid_w)
        finals, images = [], []
        for index, length in enumerate(batch.lengths):
            rows = hidden[index : index + 1, batch.text_tokens - length :]
            cond_tables = self._cond_tables(grid_h, grid_w, int(length))
            for chunk in _chunks(index * num_images, num_images, self.manifest.max_batch):
                inputs = DenoiseInputs(
                    latents=noise[chunk],
                    text_hidden=np.repeat(rows, chunk.stop - chunk.start, axis=0),
                    rope_cond=cond_tables,
                    rope_uncond=uncond_tables,
                    bucket=size,
                    schedule=plan.schedule,
                    lora=side,
                )

                def report(step: int, seconds: float, _index: int = index) -> None:
                    timings.steps.append(seconds)
                    if on_step is not None:
                        on_step(_index, step, seconds)

                generated = self.backend.generate(inputs, report)
                _require_finite(generated.latents, generated.images, self.root)
                finals.append(generated.latents)
                images.append(generated.images)
                timings.vae += generated.vae_seconds
        pixels = to_uint8(images[0] if len(images) == 1 else np.concatenate(images, axis=0))
        timings.total = time.perf_counter() - start
        return GenerationResult(
            images=pixels,
            latents=np.concatenate(finals, axis=0),
            prompts=[p for p in prompts for _ in range(num_images)],
            seeds=[seed + k for k in range(count)],
            preset=plan.preset,
            bucket=size,
            schedule=plan.schedule,
            timings=timings,
            engine_set=self.engine_set_id,
            loras=[] if side is None else [(n, k, w) for n, (k, w) in zip(side.names, side.key, strict=True)],
        )


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[0, 1] floats → uint8 by round-half-to-even of x·255, as diffusers' ``numpy_to_pil`` does. In place on one
    copy: the chained form allocates three 12 MB temporaries per 1024² image (8.0 ms on the H200 machine's host,
    docs/BENCHMARKS.md §4); the same operations in the same order give the same bytes."""
    scaled = np.clip(images, 0.0, 1.0)
    scaled *= 255.0
    np.rint(scaled, out=scaled)
    rounded: np.ndarray = scaled.astype(np.uint8)
    return rounded


def _require_finite(latents: np.ndarray, images: np.ndarray, root: Path) -> None:
    """Refuse NaN or Inf before it becomes a black PNG (``to_uint8`` turns NaN into 0). The final latents are
    small ([B, N, C]: 0.3 MB per 1024² image); the images cost about 0.8 ms per 1024² image on the host, next to
    seconds of denoising."""
    fix = f"the checkpoint or engine set is broken: run `ideogram-trt check` on the checkpoint and rebuild {root}"
    if not np.isfinite(latents).all():
        bad = int(latents.size - np.count_nonzero(np.isfinite(latents)))
        raise EngineOutputError(
            f"the engines produced non-finite latents ({bad} of {latents.size} values NaN or Inf); {fix}"
        )
    if not np.isfinite(images).all():
        raise EngineOutputError(f"the VAE decoder produced non-finite pixels (NaN or Inf); {fix}")


def _read_only(tables: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    for table in tables:
        table.flags.writeable = False
    return tables


def _chunks(start: int, count: int, size: int) -> list[slice]:
    return [slice(s, min(s + size, start + count)) for s in range(start, start + count, size)]
