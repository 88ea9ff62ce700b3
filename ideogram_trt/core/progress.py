"""Progress display for long work (rich, on stderr): a spinner per stage (``stage``), a bar for counted steps
(``StepBar``), one bar per part for work whose parts show up as it goes (``LabelledBars``).

Each leaves its elapsed time on screen when done (a summary line, or the finished bars), so logs keep the timings.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)
_Self = TypeVar("_Self", bound="_Live")


@contextmanager
def stage(message: str, quiet: bool = False) -> Iterator[None]:
    """A spinner while the block runs, then ``message … done in Xs``."""
    start = time.perf_counter()
    if quiet:
        yield
        return
    with console.status(message):
        yield
    console.print(f"{message} [dim]done in {time.perf_counter() - start:.1f}s[/]")


def _bars(quiet: bool, with_eta: bool) -> Progress:
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if with_eta:
        columns.append(TimeRemainingColumn())
    return Progress(*columns, console=console, disable=quiet)


class _Live:
    """Enters and leaves a rich ``Progress`` display: ``with`` any subclass."""

    _progress: Progress

    def __enter__(self: _Self) -> _Self:
        self._progress.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is not None:  # a failed run leaves its one error line, not a half-drawn bar above it
            self._progress.live.transient = True
        self._progress.__exit__(kind, value, traceback)


class StepBar(_Live):
    """A counted progress bar: ``with StepBar("calibrating", total) as bar: ... bar.advance()``."""

    def __init__(self, description: str, total: int, quiet: bool = False) -> None:
        self.description = description
        self.total = total
        self._progress = _bars(quiet, with_eta=True)
        self._task = self._progress.add_task(description, total=total)

    def advance(self, steps: int = 1) -> None:
        self._progress.advance(self._task, steps)

    def set_total(self, total: int) -> None:
        self._progress.update(self._task, total=total)

    def describe(self, description: str) -> None:
        self._progress.update(self._task, description=description)


class LabelledBars(_Live):
    """One counted bar per label, made when the label first shows up: for work whose parts and sizes are only
    known as it goes (make-tiny's weight files). ``with LabelledBars() as bars: bars.update(label, done, total)``."""

    def __init__(self, quiet: bool = False) -> None:
        self._progress = _bars(quiet, with_eta=False)
        self._tasks: dict[str, TaskID] = {}

    def update(self, label: str, done: int, total: int) -> None:
        if label not in self._tasks:
            self._tasks[label] = self._progress.add_task(label, total=total)
        self._progress.update(self._tasks[label], completed=done, total=total)
