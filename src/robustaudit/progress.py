"""The progress display every long loop shows on stderr: a live bar on a terminal; where stderr is not a terminal
(CI logs, `nohup`), a plain line every `ROBUSTAUDIT_PROGRESS_EVERY` seconds (default 30), so a long audit is never
silent. One display is shared by nested loops (shards, then attacks and their batches inside a shard)."""

from __future__ import annotations

import contextlib
import os
import time
from contextlib import AbstractContextManager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

EVERY_ENV = "ROBUSTAUDIT_PROGRESS_EVERY"


class AuditProgress(Progress):
    """rich's Progress, plus plain periodic lines when the console is not a terminal."""

    def __init__(self, enabled: bool, console: Console | None = None) -> None:
        console = console or Console(stderr=True)
        self.plain = enabled and not console.is_terminal
        self.every = float(os.environ.get(EVERY_ENV, "30"))
        self._last = time.monotonic()
        super().__init__(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                         console=console, disable=not enabled or self.plain)

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._plain_line()

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._plain_line()

    def _plain_line(self) -> None:
        now = time.monotonic()
        if not self.plain or now - self._last < self.every:
            return
        self._last = now
        parts = []
        for t in self.tasks:
            if not t.visible:
                continue
            eta = None if t.finished else t.time_remaining
            parts.append(f"{t.description}: {t.completed:.0f}/{t.total or 0:.0f}"
                         + ("" if eta is None else f" (about {_duration(eta)} left)"))
        if parts:
            self.console.print("progress: " + "; ".join(parts), highlight=False, markup=False, soft_wrap=True)


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def progress_bar(enabled: bool | Progress) -> AbstractContextManager[Progress]:
    """The display for a loop: a new one (drawing nothing when not `enabled`), or the caller's, shared (entering
    it again neither starts nor stops it)."""
    if isinstance(enabled, Progress):
        return contextlib.nullcontext(enabled)
    return AuditProgress(enabled)
