"""Retries for calls to Azure: bounded exponential backoff with jitter, then an actionable error.

Transient: HTTP 408, 429, 5xx, dropped or reset connections, timeouts. Everything else fails at
once. Either way the final error names what failed and what to check (role assignment, quota,
region), because a raw SDK traceback tells a CI log reader very little.

The SDK wraps failures in several exception families (requests, msrest, azure-core, its own
ComputeTargetException carrying "Response Code: 429" in its message); `status_of` reads them
all without importing any of them.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from amlctl.errors import ProviderError

log = logging.getLogger("amlctl.azure.retry")
T = TypeVar("T")

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_CONNECTION_ERRORS = frozenset({
    "ConnectionError", "ConnectionResetError", "ConnectionAbortedError", "ConnectionRefusedError",
    "RemoteDisconnected", "ProtocolError", "Timeout", "ReadTimeout", "ConnectTimeout",
    "TimeoutError", "ReadTimeoutError", "ServiceRequestError", "ServiceResponseError",
    "ServiceRequestTimeoutError", "ServiceResponseTimeoutError", "IncompleteRead",
})
_STATUS_IN_TEXT = re.compile(
    r"(?:Response Code|status code|Status code|\"status_code\")[:= ]+'?(\d{3})")


class AzureCallError(ProviderError):
    """An Azure call failed for good; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: `attempts` in all, delays base*2^n capped at max_delay, full jitter."""

    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    rand: Callable[[], float] = field(default=random.random, compare=False)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        # "full jitter": spread retries of parallel steps instead of bunching them
        return ceiling * (0.5 + 0.5 * self.rand())


DEFAULT_POLICY = RetryPolicy()


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        inner = getattr(current, "inner_exception", None)
        current = current.__cause__ or current.__context__ or (
            inner if isinstance(inner, BaseException) else None)
    return seen


def status_of(exc: BaseException) -> int | None:
    """The HTTP status behind an SDK exception, if any."""
    for e in _chain(exc):
        for holder in (e, getattr(e, "response", None)):
            code = getattr(holder, "status_code", None)
            if isinstance(code, int) and 100 <= code < 600:
                return code
        m = _STATUS_IN_TEXT.search(str(e))
        if m:
            return int(m.group(1))
    return None


def is_connection_problem(exc: BaseException) -> bool:
    """True for resets, refused or dropped connections and timeouts anywhere in the chain."""
    for e in _chain(exc):
        if any(cls.__name__ in _CONNECTION_ERRORS for cls in type(e).__mro__):
            return True
    return False


def is_transient(exc: BaseException) -> bool:
    """Worth another try: throttled, a server-side error, or the connection broke."""
    status = status_of(exc)
    if status is not None:
        return status in TRANSIENT_STATUS
    return is_connection_problem(exc)


def hint(exc: BaseException) -> str:
    """What the user should check, judged from the failure."""
    status = status_of(exc)
    text = str(exc).lower()
    if "aadsts" in text or "invalid_client" in text:
        return ("Microsoft Entra ID refused the sign-in (the AADSTS code says why): check "
                "AZURE_TENANT_ID / AZURE_CLIENT_ID and the secret or federated token")
    if "have access to" in text and "subscription" in text:
        return ("check the subscription id, that AZURE_TENANT_ID is the subscription's tenant, "
                "and that this identity has a role assignment in that subscription")
    if status in (401, 403) or "authorization" in text or "forbidden" in text:
        return ("check the credentials (AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET) "
                "and that this identity has a role assignment on the resource group, e.g. "
                "Contributor or AzureML Data Scientist")
    if "quota" in text or "exceeding" in text:
        return ("check the regional vCPU quota of this VM family (Azure portal > Machine "
                "Learning > Quotas) or lower max_nodes")
    if "not supported in" in text or "not available in" in text:
        return "check that the VM size is offered in the workspace's region"
    if status == 404:
        return "check the subscription, resource group and workspace names"
    if status == 429:
        return "the service throttled these calls; retry later or run fewer steps in parallel"
    if (status is not None and status >= 500) or is_connection_problem(exc):
        return "Azure had a transient problem or the network dropped; retry later"
    return "check the request against the Azure ML documentation"


_HEADER_LINE = re.compile(r"^[A-Za-z_.]*(?:Exception|Error):?$")


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # some SDK exceptions fail in their own __str__
        message = getattr(exc, "message", None)
        return message if isinstance(message, str) else type(exc).__name__


def _dig(obj: object) -> str | None:
    """The innermost error message of a service error body, with its code."""
    if not isinstance(obj, dict):
        return None
    for key in ("error_details", "error"):
        found = _dig(obj.get(key))
        if found:
            return found
    message = obj.get("message")
    if not isinstance(message, str) or not message.strip():
        return None
    if message.lstrip().startswith("{"):  # the SDK nests the body as a JSON string
        try:
            found = _dig(json.loads(message))
        except ValueError:
            found = None
        if found:
            return found
    code = obj.get("code")
    return f"({code}) {message.strip()}" if isinstance(code, str) and code else message.strip()


def service_words(exc: BaseException) -> str | None:
    """What the service itself said, when the SDK's message carries an error body (the run
    history and execution services' exceptions print it as JSON after `Message:`)."""
    text = _text(exc)
    # compute calls print the raw response: `Content: b'{"error": ...}'`
    content = re.search(r"\nContent: b'(\{.*?\})'\s*\n", text)
    if content:
        try:
            found = _dig(json.loads(content.group(1)))
        except ValueError:
            found = None
        if found:
            return found
    at = text.find("Message:")
    if at < 0:
        return None
    brace = text.find("{", at)
    if brace < 0 or text[at + len("Message:"):brace].strip():
        return None
    try:
        body, _ = json.JSONDecoder().raw_decode(text[brace:])
    except ValueError:
        return None
    return _dig(body)


def first_line(exc: BaseException) -> str:
    """A short, single-line description of an exception in the service's words (SDK
    messages run to pages: class names, headers, nested JSON)."""
    words = service_words(exc)
    if words:
        return " ".join(words.split())[:300]
    for line in _text(exc).splitlines():
        line = line.strip()
        if not line or _HEADER_LINE.match(line) or line.lower().startswith("code:"):
            continue
        if line.lower().startswith("message:"):
            line = line[len("message:"):].strip()
            if not line:
                continue
        return line[:300]
    return type(exc).__name__


def call(what: str, fn: Callable[[], T], policy: RetryPolicy = DEFAULT_POLICY) -> T:
    """Run fn, retrying transient failures; raise AzureCallError saying what to check."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except ProviderError:
            raise
        except Exception as exc:  # the SDK raises anything; we classify, never swallow
            if is_transient(exc) and attempt < policy.attempts:
                wait = policy.delay(attempt)
                log.warning("%s failed (%s); retry %d/%d in %.1fs", what, first_line(exc),
                            attempt, policy.attempts - 1, wait)
                policy.sleep(wait)
                continue
            raise failure(what, exc, attempt) from exc


def failure(what: str, exc: BaseException, attempts: int = 1) -> AzureCallError:
    """The error for a call that failed for good: what failed, the HTTP status, the service's
    own words, and what to check."""
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    status = status_of(exc)
    code = f" (HTTP {status})" if status else ""
    return AzureCallError(f"{what} failed{tries}{code}: {first_line(exc)}; {hint(exc)}", status)
