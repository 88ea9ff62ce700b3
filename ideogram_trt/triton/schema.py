"""The Triton model's request and response tensors, in one table: ``repository.py`` writes ``config.pbtxt`` from
it, ``model.py`` parses requests and builds responses with it, ``client.py`` builds requests from it.

Needs numpy only (no tritonclient, no ``triton_python_backend_utils``, nothing numpy-2-only): the model imports
it inside the server's environment (numpy < 2), the repository writer and the client outside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")


class DataType(Enum):
    """A Triton datatype: its name on the wire (tritonclient, model metadata), its name in ``config.pbtxt``, and
    the numpy dtype of its arrays on both sides."""

    BYTES = ("BYTES", "TYPE_STRING", np.object_)  # config.pbtxt spells BYTES as TYPE_STRING
    UINT8 = ("UINT8", "TYPE_UINT8", np.uint8)
    INT32 = ("INT32", "TYPE_INT32", np.int32)
    INT64 = ("INT64", "TYPE_INT64", np.int64)

    def __init__(self, wire: str, config: str, numpy: type[np.generic]) -> None:
        self.wire = wire
        self.config = config
        self.numpy = numpy


class Response(Enum):
    """The responses an output travels in."""

    IMAGES = "images"  # every model's last response
    PROGRESS = "progress"  # decoupled models only: one per denoising step, before the images


@dataclass(frozen=True, kw_only=True)
class TensorSpec:
    name: str
    datatype: DataType
    dims: tuple[int, ...]  # -1: any size
    labels: tuple[str, ...] = ()  # what each -1 dim counts, in order (docs only)
    meaning: str

    @property
    def shape_text(self) -> str:
        """``[1]``, or with the -1 dims labelled: ``[n, H, W, 3]``."""
        labels = iter(self.labels)
        return "[" + ", ".join(next(labels, "-1") if d == -1 else str(d) for d in self.dims) + "]"


@dataclass(frozen=True, kw_only=True)
class InputSpec(TensorSpec, Generic[T]):
    optional: bool
    default: T  # what an absent input means; None for a required input (absent: refused)

    def array(self, value: T) -> np.ndarray:
        """``value`` as a client sends it: text as UTF-8 bytes, in an array of the input's dims and dtype."""
        item = value.encode("utf-8") if isinstance(value, str) else value
        return np.array([item], dtype=self.datatype.numpy).reshape(self.dims)


@dataclass(frozen=True, kw_only=True)
class OutputSpec(TensorSpec):
    response: Response

    def array(self, values: Any) -> np.ndarray:
        """``values`` as the model sends them (no copy when they already have the output's dtype)."""
        return np.asarray(values, dtype=self.datatype.numpy)


# Every input is one value (dims [1]): model.py reads each as a scalar.
PROMPT: InputSpec[str | None] = InputSpec(
    name="prompt", datatype=DataType.BYTES, dims=(1,), optional=False, default=None,
    meaning="the prompt: UTF-8 text, JSON or plain",
)  # fmt: skip
HEIGHT: InputSpec[int | None] = InputSpec(
    name="height", datatype=DataType.INT32, dims=(1,), optional=True, default=None,
    meaning="image height in pixels, sent with width: one of the engine set's buckets (neither: its first bucket)",
)  # fmt: skip
WIDTH: InputSpec[int | None] = InputSpec(
    name="width", datatype=DataType.INT32, dims=(1,), optional=True, default=None,
    meaning="image width in pixels, sent with height",
)  # fmt: skip
PRESET: InputSpec[str | None] = InputSpec(
    name="preset", datatype=DataType.BYTES, dims=(1,), optional=True, default=None,
    meaning="sampling preset, e.g. V4_TURBO_12 (absent: the model's triton-repo --preset, else the engine set's)",
)  # fmt: skip
SEED: InputSpec[int] = InputSpec(
    name="seed", datatype=DataType.INT64, dims=(1,), optional=True, default=0,
    meaning="noise seed of the first image; image k uses seed + k",
)  # fmt: skip
NUM_IMAGES: InputSpec[int] = InputSpec(
    name="num_images", datatype=DataType.INT32, dims=(1,), optional=True, default=1,
    meaning="images to generate, at most the model's max_images parameter",
)  # fmt: skip
LORA: InputSpec[str | None] = InputSpec(
    name="lora", datatype=DataType.BYTES, dims=(1,), optional=True, default=None,
    meaning="LoRA adapters of the model's adapters folder, by name: NAME[:WEIGHT] comma-separated (LoRA-ready sets)",
)  # fmt: skip
INPUTS: tuple[InputSpec[Any], ...] = (PROMPT, HEIGHT, WIDTH, PRESET, SEED, NUM_IMAGES, LORA)

IMAGE = OutputSpec(
    name="image", datatype=DataType.UINT8, dims=(-1, -1, -1, 3), labels=("n", "H", "W"), response=Response.IMAGES,
    meaning="the images, RGB",
)  # fmt: skip
PNG = OutputSpec(
    name="png", datatype=DataType.BYTES, dims=(-1,), labels=("n",), response=Response.IMAGES,
    meaning="each image as a PNG file, with the metadata `ideogram-trt generate` writes",
)  # fmt: skip
STEP = OutputSpec(
    name="step", datatype=DataType.INT32, dims=(1,), response=Response.PROGRESS,
    meaning="denoising steps done so far, counting from 1",
)  # fmt: skip
STEPS = OutputSpec(
    name="steps", datatype=DataType.INT32, dims=(1,), response=Response.PROGRESS,
    meaning="denoising steps the request takes in all",
)  # fmt: skip
OUTPUTS: tuple[OutputSpec, ...] = (IMAGE, PNG, STEP, STEPS)


def outputs(decoupled: bool) -> tuple[OutputSpec, ...]:
    """A model's outputs, in config.pbtxt's order: the images, then for a decoupled model the progress."""
    return tuple(o for o in OUTPUTS if decoupled or o.response is Response.IMAGES)


def max_value(spec: InputSpec[Any]) -> int:
    """The largest number an integer input can carry."""
    return int(np.iinfo(np.dtype(spec.datatype.numpy)).max)


@dataclass(frozen=True)
class ImageRequest:
    """One request: a field per input, same names, same order, the table's defaults (None: left out)."""

    prompt: str
    height: int | None = HEIGHT.default
    width: int | None = WIDTH.default
    preset: str | None = PRESET.default
    seed: int = SEED.default
    num_images: int = NUM_IMAGES.default
    lora: str | None = LORA.default
