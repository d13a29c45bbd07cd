"""The uploads package's one domain error."""

from __future__ import annotations

from amlctl.errors import AmlctlError


class UploadError(AmlctlError, ValueError):
    """A sync cannot go on. The message names the path at fault and what to do about it.

    Raised for: a symlink pointing outside src_dir (or in a loop), an src_dir that is not a
    folder, a bad relpath given to a store, a file/folder name clash in a datastore folder,
    and a failed upload during apply (`partial` then holds what was done before it stopped).
    """

    def __init__(self, message: str, *, partial: object | None = None) -> None:
        super().__init__(message)
        self.partial = partial
