"""Progress on stderr for long work: rich bars when stderr is a terminal, a few plain lines when it
is a log file (Nextflow, schedulers), nothing with --quiet."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

stderr_console = Console(stderr=True)
log = logging.getLogger("virnucpro")


def configure_logging(quiet: bool = False, verbose: bool = False) -> None:
    """Send our log records to stderr, one line each; third-party libraries stay quiet."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    log.handlers.clear()
    if stderr_console.is_terminal:
        handler: logging.Handler = RichHandler(console=stderr_console, show_path=False, show_time=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s virnucpro %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


class _Task:
    def __init__(self, progress: Progress | None, task_id, description: str, total: float | None):
        self._progress = progress
        self._task_id = task_id
        self._description = description
        self._total = total
        self._done = 0.0
        self._last_log = time.monotonic()

    def advance(self, amount: float = 1) -> None:
        self._done += amount
        if self._progress is not None:
            self._progress.update(self._task_id, completed=self._done)
        elif self._description and time.monotonic() - self._last_log > 30:
            # Non-terminal stderr (a task log): one line every 30 s, not a bar redrawn per item.
            self._last_log = time.monotonic()
            total = f"/{self._total:g}" if self._total else ""
            log.info("%s: %g%s", self._description, self._done, total)

    def set_total(self, total: float | None) -> None:
        self._total = total
        if self._progress is not None:
            self._progress.update(self._task_id, total=total)

    def set_completed(self, value: float) -> None:
        self.advance(value - self._done)


@contextlib.contextmanager
def progress_task(
    description: str, total: float | None = None, quiet: bool = False, unit: str = "items"
) -> Iterator[_Task]:
    """A progress bar for one unit of work; `advance()` as items (or bytes, `unit="bytes"`) finish."""
    if quiet or not stderr_console.is_terminal:
        yield _Task(None, None, "" if quiet else description, total)
        return
    count = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        count,
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=stderr_console, transient=False) as progress:
        task_id = progress.add_task(description, total=total)
        yield _Task(progress, task_id, description, total)
