"""Retry policy: which failures are transient, how long it waits, what the last error says.

Pure logic, no SDK: the exceptions are shaped like the ones the SDK raises (status on the
exception, on its response, or only in the message text).
"""

from __future__ import annotations

from typing import Any

import pytest

from amlctl.providers.azure import retry


class Response:
    def __init__(self, status: int) -> None:
        self.status_code = status


class HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"{status} error")
        self.response = Response(status)


class ComputeTargetException(Exception):
    """Carries the status only in its text, like the SDK's."""


def test_status_is_found_wherever_the_sdk_put_it() -> None:
    assert retry.status_of(HttpError(429)) == 429
    assert retry.status_of(ComputeTargetException(
        "Received bad response from Resource Provider:\nResponse Code: 503\nHeaders: {}")) == 503
    wrapped = RuntimeError("outer")
    wrapped.__cause__ = HttpError(502)
    assert retry.status_of(wrapped) == 502
    assert retry.status_of(ValueError("no status")) is None


def test_transient_or_not() -> None:
    assert retry.is_transient(HttpError(429))
    assert retry.is_transient(HttpError(500))
    assert retry.is_transient(ConnectionResetError())
    assert retry.is_transient(TimeoutError())
    assert not retry.is_transient(HttpError(400))
    assert not retry.is_transient(HttpError(403))
    assert not retry.is_transient(ValueError("bad input"))


def test_backoff_is_exponential_capped_and_jittered() -> None:
    low = retry.RetryPolicy(base_delay=1, max_delay=10, rand=lambda: 0.0)
    high = retry.RetryPolicy(base_delay=1, max_delay=10, rand=lambda: 1.0)
    assert [low.delay(n) for n in (1, 2, 3, 4, 5, 6)] == [0.5, 1, 2, 4, 5, 5]
    assert [high.delay(n) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]


def test_retries_are_bounded_and_the_last_error_is_actionable() -> None:
    slept: list[float] = []
    policy = retry.RetryPolicy(attempts=3, sleep=slept.append, rand=lambda: 1.0)
    calls: list[int] = []

    def throttled() -> Any:
        calls.append(1)
        raise HttpError(429)

    with pytest.raises(retry.AzureCallError, match=r"listing computes failed after 3 "
                                                   r"attempts.*throttled") as info:
        retry.call("listing computes", throttled, policy)
    assert len(calls) == 3 and slept == [1, 2]
    assert info.value.status == 429


def test_success_after_transient_failures() -> None:
    outcomes: list[Exception | str] = [ConnectionResetError(), HttpError(503), "ok"]

    def flaky() -> str:
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    assert retry.call("x", flaky, retry.RetryPolicy(sleep=lambda _s: None)) == "ok"


@pytest.mark.parametrize(("error", "hint"), [
    (HttpError(403), "role assignment"),
    (ComputeTargetException("Operation results in exceeding quota limits of Core"), "quota"),
    (ComputeTargetException("The specified VM size 'X' is not supported in westeurope."),
     "offered in the workspace's region"),
])
def test_hints(error: Exception, hint: str) -> None:
    with pytest.raises(retry.AzureCallError, match=hint):
        retry.call("creating compute gpu", lambda: (_ for _ in ()).throw(error),
                   retry.RetryPolicy(sleep=lambda _s: None))
