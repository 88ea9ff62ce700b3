"""The training record `tools/train_tiny.py export` assembles (docs/TINY_MODEL.md §4.1): stage commands as recipes,
a paused stage's runs summed, a continued DiT run labelled, and refusals for records that would mislead. No
training runs here: the work folders are written by hand, as the stages would leave them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import train_tiny


def _row(stage: str, command: str, seconds: float, finished: bool = True) -> str:
    return json.dumps({"stage": stage, "command": command, "finished": finished, "seconds": seconds,
                       "device": "NVIDIA H200", "torch": "2.11.0"}) + "\n"  # fmt: skip


def _work(path: Path, rows: list[str], logs: dict[str, int]) -> Path:
    path.mkdir()
    (path / "commands.jsonl").write_text("".join(rows))
    for stage, last in logs.items():
        steps = range(100, last + 1, 100)
        (path / f"{stage}_log.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1 / s}) + "\n" for s in steps))
        (path / f"{stage}_settings.json").write_text(json.dumps({"seed": 0, f"{stage}_steps": last}))
    return path


@pytest.mark.parametrize(
    ("argv", "recipe"),
    [
        (
            ["dit", "--work", "/tmp/train/A", "--dit-steps", "3500", "--max-minutes", "9"],
            "dit --work W --dit-steps 3500",
        ),
        (["dit", "--work=/x", "--max-minutes=9", "--compile"], "dit --work W --compile"),
        (
            ["export", "--work", "a", "--then", "b", "--out", "c", "--repeat", "d", "--repeat", "e"],
            "export --work W --then W2 --out c --repeat R --repeat R2",
        ),
    ],
)
def test_recipe_command_names_folders_and_drops_the_time_budget(argv: list[str], recipe: str) -> None:
    assert train_tiny.recipe_command(argv) == "python tools/train_tiny.py " + recipe


def test_chain_labels_the_runs_and_sums_a_paused_stage(tmp_path: Path) -> None:
    first = _work(tmp_path / "A", [
        _row("base", "python tools/train_tiny.py base --work W", 10.0),
        _row("vae", "python tools/train_tiny.py vae --work W", 200.0, finished=False),
        _row("vae", "python tools/train_tiny.py vae --work W", 96.5),  # resumed after --max-minutes
        _row("dit", "python tools/train_tiny.py dit --work W --dit-steps 300", 25.0),
    ], {"vae": 500, "dit": 300})  # fmt: skip
    second = _work(tmp_path / "A2", [
        _row("dit", "python tools/train_tiny.py dit --work W --init-from /tmp/train/A --dit-steps 200", 40.0),
    ], {"dit": 200})  # fmt: skip
    stages = train_tiny.chain_stages([first, second])
    assert [s["stage"] for s in stages] == ["base", "vae", "dit (1)", "dit (2)"]
    by_name = {s["stage"]: s for s in stages}
    assert by_name["vae"]["runs"] == 2 and by_name["vae"]["wall_seconds"] == 296.5
    assert by_name["vae"]["steps"] == 500 and by_name["dit (1)"]["steps"] == 300 and by_name["dit (2)"]["steps"] == 200
    assert by_name["dit (2)"]["command"] == "python tools/train_tiny.py dit --work W2 --init-from W --dit-steps 200"
    assert by_name["dit (1)"]["settings"] == {"seed": 0, "dit_steps": 300}
    assert "settings" not in by_name["base"]
    assert [train_tiny.log_name(s["stage"]) for s in stages[1:]] == [
        "vae_log.jsonl", "dit_stage1_log.jsonl", "dit_stage2_log.jsonl"]  # fmt: skip


def test_a_single_folder_keeps_the_plain_stage_names(tmp_path: Path) -> None:
    work = _work(tmp_path / "W", [_row("dit", "python tools/train_tiny.py dit --work W", 5.0)], {"dit": 100})
    assert [s["stage"] for s in train_tiny.chain_stages([work])] == ["dit"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([_row("vae", "python tools/train_tiny.py vae --work W", 9.0, finished=False)], "did not finish"),
        (
            [
                _row("vae", "python tools/train_tiny.py vae --work W", 9.0),
                _row("vae", "python tools/train_tiny.py vae --work W --vae-steps 10", 9.0),
            ],
            "ran as",
        ),
    ],
)
def test_a_misleading_record_is_refused(tmp_path: Path, rows: list[str], message: str) -> None:
    work = _work(tmp_path / "W", rows, {"vae": 100})
    with pytest.raises(SystemExit, match=message):
        train_tiny.gather_stages(work)


def test_a_folder_without_a_record_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"commands\.jsonl is missing"):
        train_tiny.gather_stages(tmp_path)


def test_a_continued_run_must_name_the_folder_before_it(tmp_path: Path) -> None:
    first = _work(tmp_path / "A", [_row("dit", "python tools/train_tiny.py dit --work W", 5.0)], {"dit": 100})
    other = _work(tmp_path / "B2", [
        _row("dit", "python tools/train_tiny.py dit --work W --init-from /tmp/train/B --dit-steps 200", 5.0),
    ], {"dit": 200})  # fmt: skip
    with pytest.raises(SystemExit, match="does not continue"):
        train_tiny.chain_stages([first, other])


def test_a_repeat_must_run_the_same_commands_and_settings(tmp_path: Path) -> None:
    def run(name: str, command: str, steps: int) -> list[dict[str, object]]:
        return train_tiny.chain_stages([_work(tmp_path / name, [_row("dit", command, 5.0)], {"dit": steps})])

    shipped = run("A", "python tools/train_tiny.py dit --work W --dit-steps 300", 300)
    train_tiny.check_repeat(shipped, run("B", "python tools/train_tiny.py dit --work W --dit-steps 300", 300))
    with pytest.raises(SystemExit, match="commands differ"):
        train_tiny.check_repeat(shipped, run("C", "python tools/train_tiny.py dit --work W --dit-steps 3e2", 300))
    with pytest.raises(SystemExit, match="settings differ"):  # same words, other defaults (an older train_tiny)
        train_tiny.check_repeat(shipped, run("D", "python tools/train_tiny.py dit --work W --dit-steps 300", 400))
