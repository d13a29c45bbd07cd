"""Batch AI command lines as argument items, and the AZ_BATCHAI_* variables in them."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

# $NAME or ${NAME} for a Batch AI variable; the name ends where the shell's would.
BATCHAI_VAR = re.compile(r"\$(?:\{(?P<braced>AZ_BATCHAI_\w+)\}|(?P<plain>AZ_BATCHAI_\w+))")


@dataclass(frozen=True)
class Item:
    """One argument: a flag with or without a value, or a positional value.

    `joined` remembers `--flag=value` (written as two tokens in the manifest).
    """

    flag: str | None
    value: Any = None
    joined: bool = False

    def tokens(self) -> list[Any]:
        """The item as an argument list fragment."""
        if self.flag is None:
            return [self.value]
        return [self.flag] if self.value is None else [self.flag, self.value]


def split(text: str) -> list[str]:
    """Shell words of `text`; plain whitespace splitting if its quotes do not balance."""
    try:
        return shlex.split(text, posix=True)
    except ValueError:
        return text.split()


def is_flag(token: str) -> bool:
    """`-x` and `--name` are flags; `-1` and `-` are values."""
    if not token.startswith("-") or token == "-" or token == "--":
        return False
    return not re.match(r"^-\d", token)


def group(tokens: list[str]) -> list[Item]:
    """Tokens paired into flag/value items: a flag takes the next token unless it is a flag."""
    items: list[Item] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if is_flag(token) and token.startswith("--") and "=" in token:
            flag, value = token.split("=", 1)
            items.append(Item(flag, value, joined=True))
        elif is_flag(token):
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            if following is not None and not is_flag(following):
                items.append(Item(token, following))
                index += 1
            else:
                items.append(Item(token))
        else:
            items.append(Item(None, token))
        index += 1
    return items


def variables(text: str) -> list[str]:
    """Names of the AZ_BATCHAI_* variables `text` refers to, in order, once each."""
    found = [m.group("braced") or m.group("plain") for m in BATCHAI_VAR.finditer(text)]
    return list(dict.fromkeys(found))


def scalar(text: str) -> Any:
    """`"10"` -> 10 and `"0.5"` -> 0.5 when the YAML value reads back the same; else text."""
    if re.fullmatch(r"-?[1-9]\d{0,17}|0", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d+", text) and str(float(text)) == text:
        return float(text)
    return text
