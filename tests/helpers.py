"""Small shared helpers for the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

FAKE_GPU_LORA_RANK = 8  # conftest's fake_gpu_sets are LoRA-ready up to this rank


def relative_error(actual: torch.Tensor | np.ndarray, expected: torch.Tensor | np.ndarray) -> float:
    """‖actual − expected‖ / ‖expected‖ in float64."""
    a = torch.as_tensor(np.asarray(actual) if isinstance(actual, np.ndarray) else actual).double()
    e = torch.as_tensor(np.asarray(expected) if isinstance(expected, np.ndarray) else expected).double()
    return float((a - e).norm() / e.norm())


# --- reliability checks (issue 12): one-line errors, nothing outside the named folders changed ------------------

Snapshot = dict[str, tuple[int, int, str]]


def snapshot(*roots: Path) -> Snapshot:
    """Every entry under ``roots`` (links not followed): relative path → (mode, size, sha256 of a regular file's
    bytes or a link's target). Compare two snapshots to prove nothing there changed."""
    import hashlib
    import os
    import stat

    entries: Snapshot = {}
    for root in roots:
        root = Path(root)
        if not os.path.lexists(root):
            continue
        paths = [root, *sorted(root.rglob("*"))] if root.is_dir() and not root.is_symlink() else [root]
        for path in paths:
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(info.st_mode):
                digest = os.readlink(path)
            else:
                digest = ""
            entries[f"{root}:{path.relative_to(root)}"] = (stat.S_IFMT(info.st_mode), info.st_size, digest)
    return entries


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    """Run ``ideogram-trt ARGS`` in-process: (exit code, stdout, stderr)."""
    from ideogram_trt.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    """A refusal: non-zero exit, exactly one stderr line mentioning an error, the last one, starting with
    ``error:`` (no traceback, no internal error) and containing every needle (progress lines of the work done
    before the failure may precede it). Returns the line."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0, f"exit code 0 for a refused input; stderr: {err!r}"
    errors = [line for line in lines if "error" in line.lower()]
    assert len(errors) == 1 and lines[-1] == errors[0], f"expected one error line, last: {err!r}"
    line = errors[0]
    assert line.startswith("error: "), line
    assert "internal error" not in line and "Traceback" not in err, line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line
