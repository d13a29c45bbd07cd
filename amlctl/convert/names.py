"""Azure ML resource names made from arbitrary text (file names, Batch AI ids).

Each function returns a name that satisfies the service's rule for that kind of resource, as
close to the original as the rule allows. Callers report a rename when the result differs.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass


@dataclass(frozen=True)
class NameRule:
    """One naming rule: which characters are allowed, how the name starts, its length."""

    kind: str
    allowed: str  # regex character class body of allowed characters
    first: str  # regex character class body for the first character
    min_len: int
    max_len: int
    separator: str  # what replaces runs of other characters
    filler: str  # prefix added when the first character is not allowed, or the name is short
    description: str


COMPUTE = NameRule("compute", "A-Za-z0-9-", "A-Za-z", 2, 16, "-", "cluster",
                   "2-16 characters: letters, digits and '-', starting with a letter")
EXPERIMENT = NameRule("experiment", "A-Za-z0-9_-", "A-Za-z0-9", 1, 256, "-", "x",
                      "letters, digits, '-' and '_', starting with a letter or digit")
DATASTORE = NameRule("datastore", "A-Za-z0-9_", "A-Za-z0-9_", 1, 255, "_", "ds",
                     "letters, digits and '_' only")
RUN = NameRule("run", "A-Za-z0-9_.-", "A-Za-z0-9", 1, 64, "-", "r",
               "1-64 characters: letters, digits, '-', '_' and '.', starting with a letter or "
               "digit")
WORKSPACE = NameRule("workspace", "A-Za-z0-9_-", "A-Za-z0-9", 3, 33, "-", "ws",
                     "3-33 characters: letters, digits, '-' and '_', starting with a letter or "
                     "digit")
ENV_ID = NameRule("input id", "A-Za-z0-9_", "A-Za-z_", 1, 64, "_", "_",
                  "letters, digits and '_', not starting with a digit")

RESERVED_DATASTORES = frozenset({"default"})


def sanitise(raw: str, rule: NameRule) -> str:
    """`raw` turned into a name that satisfies `rule`."""
    name = re.sub(f"[^{rule.allowed}]+", rule.separator, raw.strip())
    name = name.strip(rule.separator) or rule.filler
    if not re.match(f"[{rule.first}]", name):
        name = rule.filler + (rule.separator if rule.separator not in rule.filler else "") + name
    if len(name) < rule.min_len:
        name = (name + rule.separator + rule.filler)[: rule.max_len]
    return _cut(name, rule.max_len, rule.separator)


def unique(name: str, taken: Collection[str], rule: NameRule) -> str:
    """`name`, or `name` with a numeric suffix when another resource already has it.

    Azure ML compares names without regard to case, so `taken` is compared the same way.
    """
    lowered = {t.lower() for t in taken}
    if rule is DATASTORE:
        lowered |= RESERVED_DATASTORES
    if name.lower() not in lowered:
        return name
    number = 2
    while True:
        suffix = f"{rule.separator}{number}"
        candidate = _cut(name, rule.max_len - len(suffix), rule.separator) + suffix
        if candidate.lower() not in lowered:
            return candidate
        number += 1


def _cut(name: str, length: int, separator: str) -> str:
    # Cut between words when that keeps most of the length ("auto-scale", not
    # "auto-scale-clust"), and never leave a trailing separator.
    if len(name) <= length:
        return name
    head = name[:length]
    boundary = head.rfind(separator, 0, length + 1) if name[length] != separator else length
    if boundary >= length // 2:
        head = head[:boundary]
    return head.rstrip(separator) or name[:length]
