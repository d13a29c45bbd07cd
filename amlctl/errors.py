"""Domain errors. The core raises these; the CLI maps them to exit codes in one place."""

from __future__ import annotations

from dataclasses import dataclass


class AmlctlError(Exception):
    """A problem the user can act on. Printed without a traceback; exit code 1."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One located problem in a manifest: `FILE:LINE:COL: field.path: message`."""

    file: str
    line: int | None
    column: int | None
    path: str
    message: str
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        field = f" {self.path}:" if self.path else ""
        return f"{where}:{field} {self.message}"


class ManifestError(AmlctlError):
    """The manifest is invalid. Carries every problem found, not just the first."""

    def __init__(self, errors: list[Problem]) -> None:
        self.errors = errors
        count = len(errors)
        lines = "\n".join(str(e) for e in errors)
        super().__init__(f"{lines}\n{count} error{'s' if count != 1 else ''} in the manifest")


class PlanError(AmlctlError):
    """A plan cannot be made or applied (prevent_destroy, stale plan file, refused change)."""


class LockError(AmlctlError):
    """Another apply holds the workspace lock."""


class ProviderError(AmlctlError):
    """A backend failed to do what was asked."""


class UsageError(AmlctlError):
    """The command line itself is wrong (bad --var, missing file, refused without a TTY)."""


class StateError(AmlctlError):
    """The stack's state cannot be used as it is: a state file or folder is damaged, a
    folder, read-only or on a full disk; the state belongs to another manifest; it changed
    under us (a lost race); or it disagrees with the workspace.

    The message names the state, says what is wrong and what to do about it.
    """
