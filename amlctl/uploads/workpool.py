"""Run one action over many files in a thread pool, small files grouped into batches.

A future per file costs about as much as copying a small file, so files smaller than
`BATCH_BYTES` travel in batches (up to `BATCH_FILES` files or `BATCH_BYTES` bytes, one
task, done in order by one worker, through `batch_action` when one is given: a store that
copies a batch at once); a larger file is a task of its own. Give the items
largest first and the big files start first, side by side.

`on_done(item, value)` runs on the calling thread, file by file, as each task ends. At the
first failure no new task starts, running ones finish (their successes still reach
on_done), the rest of the failing batch is skipped, and UploadError is raised, naming the
file and carrying `partial()`. On an interrupt (Ctrl-C) tasks not started are cancelled and
the interrupt propagates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any

from amlctl.uploads.errors import UploadError
from amlctl.uploads.model import FileChange

BATCH_FILES = 64
BATCH_BYTES = 4 << 20

_Outcome = tuple[FileChange, Any, Exception | None]
# Does several files at once: the values of the files it did, in order, and the exception
# of the one it stopped at (None if it did them all).
BatchAction = Callable[[list[FileChange]], tuple[list[Any], Exception | None]]


def run_all(
    pool: ThreadPoolExecutor,
    items: Sequence[FileChange],
    action: Callable[[FileChange], Any],
    on_done: Callable[[FileChange, Any], None],
    partial: Callable[[], object],
    verb: str,
    batch_action: BatchAction | None = None,
) -> None:
    """Apply `action` to every item (see module doc); `batch_action`, if given, to each
    batch of several files at once."""
    futures: set[Future[list[_Outcome]]] = {
        pool.submit(_run_batch, action, batch, batch_action) for batch in _batches(items)
    }
    failure: tuple[FileChange, Exception] | None = None
    try:
        for future in as_completed(futures):
            futures.discard(future)
            failure = _report(future.result(), on_done) or failure
            if failure is not None:
                break
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    if failure is None:
        return
    for future in futures:
        future.cancel()
    for future in futures:  # already running: let them end, and count what they did
        if not future.cancelled():
            _report(future.result(), on_done)
    item, exc = failure
    if isinstance(exc, UploadError):
        message = str(exc)
    elif isinstance(exc, OSError):
        message = f"{item.relpath}: {verb} failed: {exc.strerror or exc}"
    else:
        message = f"{item.relpath}: {verb} failed: {exc!r}"
    raise UploadError(f"{message} (apply again to resume)", partial=partial()) from exc


def _report(
    outcomes: list[_Outcome], on_done: Callable[[FileChange, Any], None]
) -> tuple[FileChange, Exception] | None:
    for item, value, exc in outcomes:
        if exc is not None:
            return item, exc
        on_done(item, value)
    return None


def _run_batch(action: Callable[[FileChange], Any], batch: list[FileChange],
               batch_action: BatchAction | None) -> list[_Outcome]:
    if batch_action is not None and len(batch) > 1:
        try:
            values, failure = batch_action(batch)
        except Exception as exc:  # not meant to raise: reported as its first file's failure
            return [(batch[0], None, exc)]
        done: list[_Outcome] = [(item, value, None)
                               for item, value in zip(batch, values, strict=False)]
        if failure is not None:
            done.append((batch[len(values)], None, failure))
        return done
    outcomes: list[_Outcome] = []
    for item in batch:
        try:
            outcomes.append((item, action(item), None))
        except Exception as exc:
            outcomes.append((item, None, exc))
            break
    return outcomes


def _batches(items: Sequence[FileChange]) -> Iterator[list[FileChange]]:
    batch: list[FileChange] = []
    size = 0
    for item in items:
        if item.size >= BATCH_BYTES:
            yield [item]
            continue
        if batch and (len(batch) >= BATCH_FILES or size + item.size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item.size
    if batch:
        yield batch
