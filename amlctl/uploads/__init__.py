"""Datastore uploads: sync a local folder to `<datastore>/<target_path>`, backend-neutral.

The pieces, one module each:
- `model`: the plain data (RemoteFile, FileChange, SyncPlan, SentFile, SyncResult);
- `store`: the `FileStore` protocol a backend implements for one upload target;
- `folder_store`: `FolderFileStore`, that protocol over a folder, for the local backend;
- `sync`: `plan_sync` (file-level diff, reading only files in doubt) and `apply_sync`
  (parallel atomic copies, hashing while copying), on the thread pool of `workpool`;
- `hashcache`: `HashCache`, the local (path, size, mtime, ctime, inode) -> sha256 memo;
- `scan`, `ignore`: which files of src_dir an upload sends (.amlignore/.gitignore, exclude:,
  symlinks, special files);
- `atomic`: streamed hashing, temp-file-then-rename writes, batched flushes to disk;
- `progress`: the progress callback protocol and its terminal view;
- `errors`: `UploadError`.

Typical use by an engine (local backend shown):

    store = FolderFileStore(datastore_dir / target_path, index_db)
    listing = store.list_files()
    with HashCache(cache_db) as cache:
        plan = plan_sync(src_dir, listing, exclude, delete_extra, cache)
        ...                                   # show plan.to_dict(), ask, then:
        result = apply_sync(plan, src_dir, store, progress_for("upload.mnist"), cache=cache)

Nothing here prints; only the `progress` view writes, to the stream it is given.
"""

from amlctl.uploads.errors import UploadError
from amlctl.uploads.folder_store import FolderFileStore
from amlctl.uploads.hashcache import HashCache
from amlctl.uploads.model import FileChange, RemoteFile, SentFile, SyncPlan, SyncResult
from amlctl.uploads.progress import NullProgress, SyncProgress, progress_for
from amlctl.uploads.store import FileStore
from amlctl.uploads.sync import DEFAULT_WORKERS, apply_sync, listing_digest, plan_sync

__all__ = [
    "DEFAULT_WORKERS",
    "FileChange",
    "FileStore",
    "FolderFileStore",
    "HashCache",
    "NullProgress",
    "RemoteFile",
    "SentFile",
    "SyncPlan",
    "SyncProgress",
    "SyncResult",
    "UploadError",
    "apply_sync",
    "listing_digest",
    "plan_sync",
    "progress_for",
]
