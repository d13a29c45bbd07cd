"""Waiting on a condition instead of sleeping a fixed time.

A fixed sleep before asserting that nothing changed passes on a slow machine without the code
ever having had its chance to act; a fixed sleep before asserting that something did change
fails there. Poll the condition (or a later event proving the code ran) instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, what: str = "",
               interval: float = 0.02) -> T:
    """Poll `predicate` until it returns something true and return that; fail after `timeout`
    seconds, naming `what` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for "
                                 f"{what or getattr(predicate, '__name__', 'a condition')}")
        time.sleep(interval)
