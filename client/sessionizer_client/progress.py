"""The progress bar of ``wait(progress=True)``: users done of total, events scanned, elapsed (rich)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from .models import JobState

Show = Callable[[JobState], None]


class Bar:
    """A rich progress bar on standard error, fed a job state after each poll."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("users"),
            MofNCompleteColumn(),
            TextColumn("{task.fields[events]:,} events scanned ({task.fields[fresh]:,} from the source)"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.task: Any = None

    def __call__(self, job: JobState) -> None:
        p = job.progress
        if self.task is None:
            self.task = self.progress.add_task(
                f"{job.id[:8]} {job.status}", total=p.users_total or None, events=0, fresh=0
            )
        self.progress.update(
            self.task,
            description=f"{job.id[:8]} {job.status}",
            total=p.users_total or None,
            completed=p.users_done,
            events=p.events_scanned,
            fresh=p.events_from_source,
        )


@contextlib.contextmanager
def display(progress: bool | Show) -> Iterator[Show]:
    """A callable to give each job state to: a rich bar, the caller's own callback, or nothing."""
    if callable(progress):
        yield progress
    elif progress:
        bar = Bar()
        with bar.progress:
            yield bar
    else:
        yield lambda job: None
