"""Plan and apply the sync of a local src_dir to a `FileStore`.

    listing = store.list_files()
    with HashCache(cache_db) as cache:
        plan = plan_sync(src_dir, listing, exclude, delete_extra, cache)
        result = apply_sync(plan, src_dir, store, progress=..., cache=cache)

`plan_sync` reads file contents only when in doubt: a local file absent from the store is an
add and a file whose size differs is a change, both without reading; a file of the same size
is compared by sha256, taken from the hash cache when its stat is unchanged, else read (the
`hashed` count). Equal sizes against a store that does not know the remote hash count as a
change. Store files absent locally are deleted only with delete_extra.

Nothing to do: given a store that can fingerprint its files (see `FileStore`) and a hash
cache, a plan that changes nothing, read no file (every local hash came from a cache entry
outside the racy window) and listed every remote file on the strength of the store's index
leaves a memo in the cache (`HashCache.no_op_memo`): a digest of every local relpath and
stat, the store's fingerprint, delete_extra and the racy window, with the plan's figures.
The next plan scans src_dir (one stat a file, as ever) and, when its files are as the memo
saw them, fingerprints the store (one stat a file of the store's folder, as a listing does:
the folder is the truth, a change made there behind our back is seen); when both digests
are the same, the plan is the same, and it is given without the listing, the hash cache
lookups or the per-file comparison. Whether a cache entry is racy depends only on its stat
and the time it was hashed, so an answer trusted then is trusted now for the same stat.
Anything else (a changed stat on either side, a temp file in the store, other inputs,
`resend_all`) takes the full plan, which replaces or drops the memo.

`apply_sync` deletes first (so a file can replace a folder of the same name), then copies
the files to add and change in a thread pool (see `workpool`), large files first (largest
first), then small ones in path order, each read once and hashed while copied by the store,
then calls the store's `flush()` if it has one (the hash cache is written meanwhile). It
sends what the files hold at apply time (a warning names any file whose content differs
from the plan's hash). On the first failure it stops starting new copies, lets the running
ones end, flushes the store and raises UploadError with the partial SyncResult in
`partial`; whatever completed is in the store and in the hash cache, so the next plan only
lists what is left. Progress callbacks run on the calling thread.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Protocol, cast

from amlctl.uploads.atomic import Hashed, hash_file
from amlctl.uploads.errors import UploadError
from amlctl.uploads.hashcache import HashCache, NoOpMemo
from amlctl.uploads.model import (
    FileChange,
    FileStat,
    LocalFile,
    RemoteFile,
    SentFile,
    SyncPlan,
    SyncResult,
)
from amlctl.uploads.progress import NullProgress, SyncProgress
from amlctl.uploads.scan import Scan, scan_tree
from amlctl.uploads.store import FileStore
from amlctl.uploads.workpool import BATCH_BYTES, BatchAction, run_all

# Threads overlap disk and network waits; sha256 and file I/O release the GIL, so large
# files hash on every core. Small files go to the pool in batches (see workpool).
DEFAULT_WORKERS = 8


def listing_digest(listing: Mapping[str, RemoteFile]) -> str:
    """A sha256 over a store listing (paths, sizes, hashes), independent of dict order."""
    lines = [f"{p}\0{f[0]}\0{f[1] or ''}\n" for p, f in sorted(listing.items())]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def plan_sync(
    src_dir: Path,
    store_listing: Mapping[str, RemoteFile] | Callable[[], Mapping[str, RemoteFile]] | FileStore,
    exclude: Sequence[str] = (),
    delete_extra: bool = False,
    cache: HashCache | None = None,
    *,
    workers: int = DEFAULT_WORKERS,
    resend_all: bool = False,
    never: Sequence[Path] = (),
) -> SyncPlan:
    """The file-level difference between src_dir and a store listing (see module doc).

    `resend_all` (`apply --replace upload.NAME`): every local file is to be sent again,
    whatever the store holds; deletes are planned as usual. Raises UploadError for a
    symlink leaving src_dir. Files hashed here are recorded in `cache` (flushed before
    returning). Folders in `never` (amlctl's state folder) are never part of the upload,
    wherever they sit under src_dir (see `scan`). `store_listing` may be a function listing
    the store (`store.list_files`) or the store itself: it is then listed on a thread while
    src_dir is scanned (a network listing overlaps the scan). A store that can fingerprint
    its files (see `FileStore`) is walked after the scan instead (a local folder: a thread
    would only contend for the interpreter lock), and may spare the plan its listing (see
    "Nothing to do").
    """
    memo_key = memo = local_print = None
    if (cache is not None and not resend_all and hasattr(store_listing, "fingerprint")
            and hasattr(store_listing, "list_files_fingerprinted")):
        store = cast(_Fingerprinting, store_listing)
        memo_key = f"{src_dir.absolute()}\0{store.fingerprint_key}"
        memo = cache.no_op_memo(memo_key)
        # Not on a thread (see above: two walks in two threads are slower than one after the
        # other); a store that can walk its files in another process meanwhile does, when a
        # memo may spare the listing (see `FileStore`). Its fingerprint counts only when
        # src_dir is as the memo saw it.
        start = getattr(store, "fingerprint_ahead", None)
        # the store's files when the memo was made: how long its walk will be
        ahead = (start(memo.unchanged + memo.kept_extra)
                 if memo is not None and start is not None else None)
        try:
            scan = scan_tree(src_dir, exclude, never)
            local_print = _local_print(scan, delete_extra, cache)
            if memo is not None and memo.local == local_print:
                remote_print = ahead.result() if ahead is not None else store.fingerprint()
                if remote_print is not None and remote_print == memo.remote:
                    return SyncPlan(add=(), change=(), delete=(), unchanged=memo.unchanged,
                                    kept_extra=memo.kept_extra, hashed=0,
                                    delete_extra=delete_extra,
                                    remote_digest=memo.remote_digest, warnings=scan.warnings)
        finally:
            if ahead is not None:
                ahead.cancel()
        # src_dir or the store changed: the full plan (its folder is walked once more)
        listing, remote_print = store.list_files_fingerprinted()
        cache.warm(src_dir.absolute())
    elif hasattr(store_listing, "list_files") or callable(store_listing):
        listing_fn = getattr(store_listing, "list_files", store_listing)
        with ThreadPoolExecutor(max_workers=1) as lister:
            listed = lister.submit(listing_fn)
            scan = _scan_and_warm(src_dir, exclude, cache, never)
            _ = scan.files  # made while the listing is on its way, not after it arrives
            listing = listed.result()
    else:
        scan = _scan_and_warm(src_dir, exclude, cache, never)
        listing = cast(Mapping[str, RemoteFile], store_listing)
    plan = _compare(scan, listing, cache, src_dir, delete_extra, resend_all, workers)
    if memo_key is not None and cache is not None and local_print is not None:
        # Only a plan that trusted the hash cache for every file (none read: no racy entry)
        # and the store's index for every remote file may spare the next one its work.
        if not plan.has_changes and not plan.hashed and remote_print is not None:
            fresh = NoOpMemo(local_print, remote_print, plan.unchanged, plan.kept_extra,
                             plan.remote_digest)
            if fresh != memo:
                cache.record_no_op(memo_key, fresh)
        elif memo is not None:
            cache.record_no_op(memo_key, None)
    return plan


def _compare(scan: Scan, store_listing: Mapping[str, RemoteFile], cache: HashCache | None,
             src_dir: Path, delete_extra: bool, resend_all: bool, workers: int
             ) -> SyncPlan:
    """The plan from a scan and a listing (`hashed`: the files read for it)."""
    add: list[FileChange] = []
    change: list[FileChange] = []
    doubts: list[tuple[LocalFile, RemoteFile]] = []
    unchanged = 0
    files = scan.files
    knowns = cache.lookup_all(files) if cache is not None else [None] * len(files)
    for local, known in zip(files, knowns, strict=True):
        remote = store_listing.get(local.relpath)
        if remote is None:
            add.append(FileChange(local.relpath, local.stat.size, known))
        elif resend_all or remote.size != local.stat.size or remote.sha256 is None:
            change.append(_change(local, known, remote))
        elif known is None:
            doubts.append((local, remote))
        elif known != remote.sha256:
            change.append(_change(local, known, remote))
        else:
            unchanged += 1
    for local, remote, sha in _hash_all(doubts, cache, workers):
        if sha == remote.sha256:
            unchanged += 1
        else:
            change.append(_change(local, sha, remote))
    if cache is not None:
        cache.forget_missing(src_dir.absolute(), set(map(itemgetter(1), files)))
        cache.flush()
    extras = sorted(store_listing.keys() - set(map(itemgetter(0), files)))
    delete = tuple(
        FileChange(p, store_listing[p].size, store_listing[p].sha256) for p in extras
    ) if delete_extra else ()
    return SyncPlan(
        add=tuple(add),
        change=tuple(sorted(change, key=lambda c: c.relpath)),
        delete=delete,
        unchanged=unchanged,
        kept_extra=0 if delete_extra else len(extras),
        hashed=len(doubts),
        delete_extra=delete_extra,
        remote_digest=listing_digest(store_listing),
        warnings=scan.warnings,
    )


class _Fingerprinting(Protocol):
    """The optional part of the FileStore contract a no-op plan uses (see `store`)."""

    fingerprint_key: str

    def fingerprint(self) -> str | None: ...

    def list_files_fingerprinted(self) -> tuple[dict[str, RemoteFile], str | None]: ...


def _local_print(scan: Scan, delete_extra: bool, cache: HashCache) -> str:
    """A digest of what a plan depends on besides the store: every local file's path and
    stat, delete_extra, and the racy window the cache's answers were judged by. marshal
    version 2 writes no back-references: the fastest to write."""
    head = f"{delete_extra}\0{cache.racy_window_ns}\0".encode()
    return hashlib.sha256(head + marshal.dumps(scan.rows, 2)).hexdigest()


def _scan_and_warm(src_dir: Path, exclude: Sequence[str], cache: HashCache | None,
                   never: Sequence[Path]) -> Scan:
    scan = scan_tree(src_dir, exclude, never)
    if cache is not None:
        cache.warm(src_dir.absolute())
    return scan


def apply_sync(
    plan: SyncPlan,
    src_dir: Path,
    store: FileStore,
    progress: SyncProgress | None = None,
    workers: int | None = None,
    cache: HashCache | None = None,
) -> SyncResult:
    """Carry out `plan` against `store` (see module doc). Hashes of the files sent are
    recorded in `cache`, so the next plan need not read them. `workers`: copies at once,
    by default what the store asks for (its `parallelism`), else DEFAULT_WORKERS."""
    workers = workers or getattr(store, "parallelism", DEFAULT_WORKERS)
    started = time.perf_counter()
    progress = progress or NullProgress()
    root = str(src_dir.absolute())
    under_root = root.rstrip("/") + "/"  # + a relpath: the file's path (no join per file)
    to_send = _in_sending_order(plan)
    sent: list[SentFile] = []
    deleted: list[str] = []
    warnings = list(plan.warnings)

    def result() -> SyncResult:
        return SyncResult(
            sent=tuple(sorted(sent, key=lambda f: f.relpath)),
            deleted=tuple(sorted(deleted)),
            seconds=time.perf_counter() - started,
            warnings=tuple(warnings),
        )

    def on_deleted(item: FileChange, _: object) -> None:
        deleted.append(item.relpath)

    def on_sent(item: FileChange, outcome: _Sent) -> None:
        remote, before, hashed_at = outcome
        sent.append(SentFile(item.relpath, remote.size, remote.sha256))
        if item.sha256 is not None and remote.sha256 != item.sha256:
            warnings.append(f"{item.relpath}: changed since the plan; sent as it is now")
        # Keyed on the stat taken before the copy: a write during the copy changes the stat
        # (or falls in the racy window), so such an entry is never trusted.
        if cache is not None and remote.sha256 and remote.size == before.size:
            cache.record(under_root + item.relpath, before, remote.sha256, hashed_at)
        progress.advance(item.relpath, remote.size)

    prepare = getattr(store, "prepare", None)
    if callable(prepare) and to_send:
        prepare(len(to_send))
    progress.start(len(to_send), plan.bytes_to_send)
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            run_all(pool, plan.delete, lambda c: store.delete_file(c.relpath), on_deleted,
                    result, "delete")
            run_all(pool, to_send, lambda c: _send(store, root, c.relpath), on_sent, result,
                    "upload", _batch_sender(store, root))
    finally:
        try:
            _flush_both(store, cache)
        finally:
            progress.finish()
    return result()


def _in_sending_order(plan: SyncPlan) -> list[FileChange]:
    """Large files first, largest first, so they run side by side; then the small ones in
    path order, so a batch (see workpool) mostly writes into one folder."""
    files = (*plan.add, *plan.change)
    large = sorted((c for c in files if c.size >= BATCH_BYTES),
                   key=lambda c: (-c.size, c.relpath))
    # a key made in C, for thousands of files (nearly in order already: a scan's order)
    return large + sorted((c for c in files if c.size < BATCH_BYTES), key=attrgetter("relpath"))


def _flush_both(store: FileStore, cache: HashCache | None) -> None:
    """Flush the store and the hash cache: the cache is written while the store's flush
    waits on the disk, by the store itself when it can (`flush(during=...)`: on its own
    thread, after its own writes; two writers on two threads are no faster, they share the
    interpreter lock), else on a thread of its own. The store's error is the one raised."""
    if cache is None:
        _flush(store)
        return
    if getattr(store, "flush_during", False):
        _flush(store, during=cache.flush)
        return
    with ThreadPoolExecutor(max_workers=1) as helper:
        published = helper.submit(_flush, store)
        try:
            cache.flush()
        finally:
            published.result()


def _flush(store: FileStore, **options: Callable[[], object]) -> None:
    """Publish what a store may still hold back (see the FileStore contract)."""
    flush = getattr(store, "flush", None)
    if callable(flush):
        try:
            flush(**options)
        except OSError as exc:
            raise UploadError(f"publishing the files sent failed: {exc}") from exc


_Sent = tuple[RemoteFile, FileStat, int]


def _send(store: FileStore, root: str, relpath: str) -> _Sent:
    path = os.path.join(root, relpath)
    hashed_at = time.time_ns()
    put_file_stat = getattr(store, "put_file_stat", None)
    try:
        if put_file_stat is not None:  # the store stats src as it opens it: no stat here
            remote, before = put_file_stat(path, relpath)  # a str: no Path built per file
            return remote, before, hashed_at
        before = FileStat.of(os.stat(path))
        return store.put_file(Path(path), relpath), before, hashed_at
    except FileNotFoundError as exc:
        raise _gone(exc, root, relpath) from exc


def _gone(exc: FileNotFoundError, root: str, relpath: str) -> Exception:
    """What a missing file means: the source gone since the plan, if it is; else exc, as
    it is (something missing on the store's side)."""
    if os.path.exists(os.path.join(root, relpath)):
        return exc
    return UploadError(f"{relpath}: gone from {root} since the plan; plan again")


def _batch_sender(store: FileStore, root: str) -> BatchAction | None:
    """Sends a batch of small files at once, if the store can (`put_files_stat`)."""
    put_files_stat = getattr(store, "put_files_stat", None)
    if put_files_stat is None:
        return None

    def send(batch: list[FileChange]) -> tuple[list[_Sent], Exception | None]:
        hashed_at = time.time_ns()  # before any is opened: a racy entry is never trusted
        done, failure = put_files_stat(root, [(item.relpath, item.size) for item in batch])
        if isinstance(failure, FileNotFoundError):
            failure = _gone(failure, root, batch[len(done)].relpath)
        return [(remote, before, hashed_at) for remote, before in done], failure

    return send


def _change(local: LocalFile, sha: str | None, remote: RemoteFile) -> FileChange:
    return FileChange(local.relpath, local.stat.size, sha, remote.size, remote.sha256)


def _hash_all(
    doubts: list[tuple[LocalFile, RemoteFile]], cache: HashCache | None, workers: int
) -> list[tuple[LocalFile, RemoteFile, str]]:
    """Hash the doubtful files in parallel; record each in the cache (on this thread)."""
    if not doubts:
        return []

    def one(local: LocalFile) -> tuple[int, Hashed]:
        hashed_at = time.time_ns()
        return hashed_at, hash_file(local.path)

    out: list[tuple[LocalFile, RemoteFile, str]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for (local, remote), (hashed_at, hashed) in zip(
            doubts, pool.map(one, (local for local, _ in doubts)), strict=True
        ):
            if cache is not None and hashed.stat == local.stat:
                cache.record(local.path, hashed.stat, hashed.sha256, hashed_at)
            out.append((local, remote, hashed.sha256))
    return out
