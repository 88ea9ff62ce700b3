"""Write generated images as PNG with their provenance in text chunks (readable with any PNG tool, e.g.
``PIL.Image.open(p).text``)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

from ideogram_trt import __version__


def png_metadata(
    prompt: str, seed: int, preset: str, bucket: str, engine_set: str, extra: dict[str, object] | None = None
) -> dict[str, str]:
    fields = {
        "prompt": prompt,
        "seed": str(seed),
        "preset": preset,
        "bucket": bucket,
        "engine_set": engine_set,
        "software": f"ideogram-trt {__version__}",
    }
    if extra:
        fields["parameters"] = json.dumps(extra, sort_keys=True)
    return fields


def png_bytes(image: np.ndarray, metadata: dict[str, str]) -> bytes:
    """``image`` (uint8 [H, W, 3]) as PNG, ``metadata`` in iTXt chunks."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in metadata.items():
        info.add_itxt(key, value)
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def save_png(image: np.ndarray, path: Path, metadata: dict[str, str]) -> Path:
    """Write ``image`` (uint8 [H, W, 3]) atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(png_bytes(image, metadata))
    os.replace(tmp, path)
    return path


def output_paths(output: Path, count: int) -> list[Path]:
    """``out.png`` for one image; ``out-0.png``, ``out-1.png``, … for several."""
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{k}{output.suffix or '.png'}") for k in range(count)]
