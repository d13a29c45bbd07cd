"""The error the converters raise for inputs they cannot read."""

from __future__ import annotations

from amlctl.errors import AmlctlError


class ConvertError(AmlctlError):
    """An input file is missing, unreadable or not what it was passed as; or an output exists."""
