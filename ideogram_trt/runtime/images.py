"""Write generated images as PNG with their provenance in text chunks (readable with any PNG tool, e.g.
``PIL.Image.open(p).text``)."""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ideogram_trt import __version__
from ideogram_trt.core.errors import InputError
from ideogram_trt.core.files import atomic_write, check_output_target, remove_stale
from ideogram_trt.core.schedule import Schedule


def schedule_parameters(schedule: Schedule) -> dict[str, object]:
    """The sampling settings a PNG records (``parameters``): the CLI's and Triton's PNGs carry the same."""
    return {"steps": schedule.steps, "guidance": schedule.guidance.tolist(), "terminal": schedule.terminal.value}


def png_metadata(
    prompt: str,
    seed: int,
    preset: str,
    bucket: str,
    engine_set: str,
    extra: dict[str, object] | None = None,
    loras: Sequence[tuple[str, str, float]] = (),
) -> dict[str, str]:
    """The PNG's text fields; ``loras``: (name, sha256, weight) of each adapter used."""
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
    if loras:
        fields["loras"] = json.dumps([{"name": n, "sha256": k, "weight": w} for n, k, w in loras])
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
    """Write ``image`` (uint8 [H, W, 3]) atomically (``core.files``): a reader never sees half a file, and only a
    regular file or a new path is written (never a device, FIFO, folder or symbolic link)."""
    return atomic_write(path, png_bytes(image, metadata), "PNG output")


def check_outputs(output: Path, count: int) -> list[Path]:
    """The ``count`` PNG paths for ``-o output``, each refused up front (before any engine runs) unless it is a
    regular file or a new path in a folder that is a folder; then our dead writers' temporaries there removed."""
    if str(output) == "-":
        raise InputError("-o -: PNGs cannot go to standard output; give a file path, e.g. -o out.png")
    folder = _existing_ancestor(output.parent)
    if folder is not None and not _is_dir(folder):
        raise InputError(f"{output}: {folder} is not a folder; give -o a path inside a folder")
    check_output_target(output, "PNG output")  # `-o DIR` (or `-o .`) is refused whatever the count
    paths = output_paths(output, count)
    for path in paths:
        check_output_target(path, "PNG output")
    names = {path.name for path in paths}
    remove_stale(output.parent, lambda name: name in names or name.lower().endswith(".png"))
    return paths


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:  # a dangling link, a loop of links
        return False


def _existing_ancestor(folder: Path) -> Path | None:
    """The nearest of ``folder`` and its parents that exists (links followed), or None."""
    for candidate in (folder, *folder.parents):
        if os.path.lexists(candidate):
            return candidate
    return None


def output_paths(output: Path, count: int) -> list[Path]:
    """``out.png`` for one image; ``out-0.png``, ``out-1.png``, … for several."""
    if not output.name:
        raise InputError(f"-o {output}: give a file path, e.g. {output / 'out.png'}")
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{k}{output.suffix or '.png'}") for k in range(count)]
