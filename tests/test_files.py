"""``core.files`` units the CLI tests reach only indirectly: which temporaries ``remove_stale`` may delete."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ideogram_trt.core.files import remove_stale


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid  # reaped: no process has this pid until the kernel wraps around


def test_remove_stale_keeps_live_writers_and_foreign_names(tmp_path: Path) -> None:
    live = subprocess.Popen(["sleep", "60"])
    try:
        dead = _dead_pid()
        keep = [
            f".plan.ideogram-partial-{live.pid}-abc123",  # a writer still running
            f".plan.ideogram-tmp-{live.pid}-00ff",
            f"plan.ideogram-tmp-{dead}-abc123",  # no leading dot: not our mark
            f".plan.ideogram-tmp-{dead}-xyz",  # not hex
            "notes.txt",
        ]
        gone = [f".plan.ideogram-partial-{dead}-abc123", f".engine.plan.ideogram-tmp-{dead}-0a1b"]
        for name in keep + gone:
            (tmp_path / name).write_text("x")
        (tmp_path / f".dir.ideogram-partial-{dead}-beef").mkdir()
        (tmp_path / f".dir.ideogram-partial-{dead}-beef" / "inner").write_text("x")
        removed = remove_stale(tmp_path)
        assert sorted(p.name for p in removed) == sorted([*gone, f".dir.ideogram-partial-{dead}-beef"])
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)
    finally:
        live.kill()
        live.wait()


def test_remove_stale_with_a_name_filter(tmp_path: Path) -> None:
    dead = _dead_pid()
    (tmp_path / f".a.onnx.ideogram-tmp-{dead}-1").write_text("x")
    (tmp_path / f".b.plan.ideogram-tmp-{dead}-2").write_text("x")
    removed = remove_stale(tmp_path, names=lambda name: name.endswith(".plan"))
    assert [p.name for p in removed] == [f".b.plan.ideogram-tmp-{dead}-2"]
    assert [p.name for p in tmp_path.iterdir()] == [f".a.onnx.ideogram-tmp-{dead}-1"]
