"""Progress of an apply: the callback protocol, and the view a terminal user sees.

`apply_sync` calls, on its own thread: `start(files, nbytes)` once, `advance(relpath, nbytes)`
as each file lands in the store, then `finish()` (also after a failure).

`progress_for(label)` gives the view: a rich progress bar (files, bytes, rate, ETA) when the
stream is a terminal, else one summary line at the end, for CI logs. rich is imported only
when a bar is really shown, to keep the CLI's startup fast.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, TextIO


class SyncProgress(Protocol):
    """Receives an apply's progress (see module doc)."""

    def start(self, files: int, nbytes: int) -> None:
        """The totals to expect."""
        ...

    def advance(self, relpath: str, nbytes: int) -> None:
        """One more file, of nbytes, is in the store."""
        ...

    def finish(self) -> None:
        """No more calls follow."""
        ...


class NullProgress:
    """Reports nothing."""

    def start(self, files: int, nbytes: int) -> None:
        """Ignore."""

    def advance(self, relpath: str, nbytes: int) -> None:
        """Ignore."""

    def finish(self) -> None:
        """Ignore."""


class SummaryLine:
    """Counts silently, then writes one line: `LABEL: N files, SIZE in Ts (RATE/s)`."""

    def __init__(self, label: str, stream: TextIO) -> None:
        self.label = label
        self.stream = stream
        self.files = 0
        self.nbytes = 0
        self._started = time.perf_counter()

    def start(self, files: int, nbytes: int) -> None:
        """Start the clock."""
        self._started = time.perf_counter()

    def advance(self, relpath: str, nbytes: int) -> None:
        """Count one file."""
        self.files += 1
        self.nbytes += nbytes

    def finish(self) -> None:
        """Write the summary line."""
        self.stream.write(summary(self.label, self.files, self.nbytes,
                                  time.perf_counter() - self._started) + "\n")
        self.stream.flush()


class RichBar:
    """A live rich progress bar: files done/total, bytes, transfer rate and time left."""

    def __init__(self, label: str, stream: TextIO) -> None:
        self.label = label
        self.stream = stream
        self._progress: Any = None
        self._task: Any = None
        self._files = 0

    def start(self, files: int, nbytes: int) -> None:
        """Show the bar."""
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[files]}/{task.fields[total_files]} files"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(file=self.stream),
        )
        self._task = self._progress.add_task(
            self.label, total=max(nbytes, 1), files=0, total_files=files
        )
        self._progress.start()

    def advance(self, relpath: str, nbytes: int) -> None:
        """Move the bar by one file."""
        self._files += 1
        self._progress.update(self._task, advance=nbytes, files=self._files)

    def finish(self) -> None:
        """Stop the bar, leaving its last state on screen."""
        if self._progress is not None:
            self._progress.stop()


def progress_for(label: str, stream: TextIO | None = None) -> SyncProgress:
    """The progress view for `label` on `stream` (default stderr): a bar on a terminal,
    one summary line otherwise."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return RichBar(label, stream)
    return SummaryLine(label, stream)


def summary(label: str, files: int, nbytes: int, seconds: float) -> str:
    """`LABEL: N files, SIZE in Ts (RATE/s)`, or `LABEL: nothing to upload`."""
    if files == 0:
        return f"{label}: nothing to upload"
    rate = nbytes / seconds if seconds > 0 else 0.0
    noun = "file" if files == 1 else "files"
    took = f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.0f}s"
    return f"{label}: {files} {noun}, {human_bytes(nbytes)} in {took} ({human_bytes(rate)}/s)"


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
