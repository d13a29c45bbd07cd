"""The runs package's one domain error."""

from __future__ import annotations

from amlctl.errors import ProviderError


class RunError(ProviderError):
    """A run cannot be defined, submitted, found or read. The message says what to fix.

    Raised for: an input naming a datastore the workspace does not have, an input path that
    leaves its datastore, a source_directory or entry_script that does not exist, an unknown
    run id, and an unknown role in a log filter.
    """
