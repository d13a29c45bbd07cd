"""A seeded mutator of manifests and var files: the generated corpus of hostile input.

`generate(seed, count)` turns the examples and the bad-manifest fixtures into `count` cases,
each a manifest (bytes, not always valid UTF-8 or YAML), maybe a var file, and a command. The
same seed gives the same cases, so a failure is reproduced with its seed and index.

Mutations: on the data (delete, type swap, huge and odd numbers, unicode and control
characters, template snippets including the hostile ones and reads of a secret, paths with
`..`, absolute paths and links, unknown and misspelt keys, copied subtrees) and on the text
(YAML tags, anchors, aliases and merge keys, alias bombs, duplicate keys, truncation, invalid
UTF-8, tabs, deep nesting, long lines).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tests.manifest.hostile import HOSTILE

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BAD = Path(__file__).parent / "bad"
CANARY = "corpus-Canary-4b1d!s3cret"  # the value of every secret; must never be printed
SECRET_NAMES = ("IMAGES_KEY", "K", "AMLCTL_TEST_KEY")

# Links the corpus project holds (see `make_project`): out of the project, to itself, up. In a
# folder of their own, so the examples' own folders stay valid for the cases that plan.
LINKS = {
    "links/out": "/etc",
    "links/self": "self",
    "links/up": "..",
    "links/passwd.py": "/etc/passwd",
    "links/escape": "../../..",
}

NUMBERS: list[Any] = [
    0, -1, 1, 2, 17, 65, 2**31, 2**63, -(2**63), 10**100, 1.5, -0.0, 1e308, 1e-308,
    float("inf"), float("-inf"), float("nan"), True, False,
]
STRINGS = [
    "", " ", "x" * 300, "x" * 70_000, "é", "\u202eevil", "\u0000", "a\u0000b", "\x1b[31mred",
    "\t", "\r\n", "🚀" * 10, "Ω≈ç√", "\ufeff", "\ud7ff", "'\"", "{{", "}}", "{%", "#", "- x",
    "~", "null", "true", "0x10", "1e3", "..", "%s%s%s", "$(touch pwned)", "`id`",
]
PATHS = [
    "..", "../..", "/etc", "/etc/passwd", "/", "links/out", "links/self", "links/up",
    "links/escape", "links/passwd.py", "links", "passwd.py", "src/../../etc", "a" * 300,
    "a/" * 200, "", ".", "./", "~", "C:\\x", "\\\\server\\share", "src\x00",
    "links/escape/escape", "..\\..", "out/../../x",
]
SECRET_TEMPLATES = [
    "{{ secret_env('IMAGES_KEY') }}", "{{ env(secret_env('K')) }}",
    "{% for v in vars.values() %}{{ v }}{% endfor %}", "{{ vars.values()|join }}",
    "{{ vars|tojson }}", "{{ vars.items()|list }}", "{{ '%s'|format(vars.s) }}",
    "{{ vars.s ~ 'x' }}", "{{ vars.s[1:] }}", "{{ vars.s|upper }}", "{{ vars.s|length }}",
    "{{ vars.s|list }}", "{{ vars.s == 'x' }}", "x{{ vars }}", "{{ '%.3s' % vars.s }}",
    "{{ vars.s.split('-') }}", "{{ env('X', secret_env('K')) }}", "{{ secret_env(vars.s) }}",
]
HOSTILE_TEMPLATES = [h[1] for h in HOSTILE]  # each costs up to a second of budget: used sparingly
TEMPLATES = [
    *SECRET_TEMPLATES,
    "{{ vars.nodes }}", "{{ vars.nodes * 2 }}", "{{ vars.missing }}", "{{ nope }}", "{{ 1/0 }}",
    "{{ '' .__class__ }}", "{{ cycler }}", "{{ namespace(a=1) }}", "{{ [1, 2]|tojson }}",
    "{{ 'x'|safe }}", "{{ range(3) }}", "{{ env }}", "{% raw %}{{{% endraw %}", "{{", "{% for %}",
    "{% include 'x' %}", "{% extends 'x' %}", "{% import 'x' as y %}", "{{ lipsum() }}",
    "{{ self }}", "{{ vars|attr('__class__') }}", "{{ {}.items }}", "{{ dict(a=1) }}",
    "{{ 'x'.encode() }}", "{{ 2 ** 100 }}", "{{ -1 }}", "{{ true }}", "{{ none }}",
    "{{ ['a'] * 3 }}", "{{ {'a': {'b': 1}} }}", "{% set x = 1 %}", "{{ env('HOME') }}",
]
VAR_ARGS = ["nodes=9223372036854775808", "nodes=-1", "nodes=true", "nodes=", "=x", "novalue",
            "nodes={{ 'x' * 10 }}", "s={{ secret_env('K') }}", "nodes=1e999", "k=\u202e",
            "nodes={{ vars.s|upper }}", "train_steps=.nan"]
TAGS = ["!!python/object/apply:os.system ['touch pwned']", "!foo x", "!!binary aGk=",
        "!!set {a, b}", "!!omap [a: 1]", "!!timestamp 2001-12-14", "!!float 1", "!!str 1",
        "!!int '2'", "!<tag:yaml.org,2002:python/name:os.system> x", "!!map {}", "!!seq []"]


@dataclass(frozen=True)
class Case:
    """One generated input: what to write and which command reads it."""

    index: int
    seed_name: str
    mutations: tuple[str, ...]
    manifest: bytes
    var_file: bytes | None
    command: tuple[str, ...]

    def describe(self) -> str:
        """A line that identifies the case in a failure message."""
        return f"case {self.index} from {self.seed_name}: {', '.join(self.mutations)}"


def make_project(folder: Path) -> Path:
    """The folder cases are written into: a copy of the examples, the files the bad fixtures
    refer to, and the links of LINKS. Returns the folder manifests go in."""
    import shutil

    shutil.copytree(EXAMPLES, folder / "examples",
                    ignore=shutil.ignore_patterns(".*", "__pycache__"))
    home = folder / "examples" / "mnist"
    (home / "src" / "train.py").write_text("print('training')\n")
    (home / "links").mkdir()
    for link, target in LINKS.items():
        (home / link).symlink_to(target)
    return home


def seeds() -> list[tuple[str, bytes]]:
    """(name, text) of every example and every bad fixture."""
    found = [(str(p.relative_to(ROOT)), p.read_bytes()) for p in sorted(EXAMPLES.rglob(
        "amlctl*.yaml"))]
    found += [(str(p.relative_to(ROOT)), p.read_bytes()) for p in sorted(BAD.glob("*.yaml"))]
    return found


@cache
def _sources() -> tuple[list[tuple[str, bytes, Any]], list[tuple[str, bytes, Any]]]:
    """(examples, bad fixtures), each as (name, text, data or None)."""
    loaded = [(name, text, _load(text)) for name, text in seeds()]
    return ([s for s in loaded if s[0].startswith("examples")],
            [s for s in loaded if not s[0].startswith("examples")])


def generate(seed: int, count: int) -> list[Case]:
    """`count` cases, the same ones for the same seed."""
    rng = random.Random(seed)
    examples, fixtures = _sources()
    cases = []
    for index in range(count):
        if rng.random() < 0.1:
            cases.append(_benign(rng, index, examples))
            continue
        # the examples are valid: mutating them reaches plan and the checks after validation
        name, text, data = rng.choice(examples if rng.random() < 0.4 else fixtures)
        data = json.loads(json.dumps(data)) if data is not None else None
        mutations: list[str] = []
        if data is not None and rng.random() < 0.8:
            for _ in range(rng.randint(1, 3)):
                mutations.append(_mutate_data(rng, data))
            text = _dump(data)
        if rng.random() < 0.35 or not mutations:
            text, what = _mutate_text(rng, text)
            mutations.append(what)
        var_file = _var_file(rng) if rng.random() < 0.3 else None
        roll = rng.random()
        command = ("validate",) if roll < 0.7 else ("render",) if roll < 0.9 else \
            ("--backend", "local", "plan")
        if rng.random() < 0.1:
            command = ("--var", rng.choice(VAR_ARGS), *command)
        cases.append(Case(index, name, tuple(mutations), text, var_file, command))
    return cases


def _benign(rng: random.Random, index: int, examples: list[tuple[str, bytes, Any]]) -> Case:
    """A valid manifest with secrets inserted whole and odd but legal text: planned for real,
    so the plan, its output and the state it writes are checked too."""
    name, _, data = next(e for e in examples if e[0].endswith("mnist/amlctl.yaml"))
    data = json.loads(json.dumps(data))
    secret = rng.choice(["{{ secret_env('K') }}", "k={{ secret_env('K') }};",
                         "{% for v in vars.values() %}{{ v }}{% endfor %}",
                         "{{ vars.values()|join(',') }}", "{{ '%s'|format(vars.s) }}",
                         "{{ vars.s ~ '-' ~ vars.s }}"])
    data["vars"]["s"] = "{{ secret_env('K') }}"
    data["runs"]["tf-mnist"]["environment"]["env_vars"] = {"KEY": secret}
    data["datastores"] = {"blobs": {"type": "azure_blob", "account_name": "acct",
                                    "container_name": "c", "sas_token": secret}}
    data["workspace"]["tags"] = {"note": rng.choice(["é🚀", "\u202ertl", "x" * 200, "a: b"])}
    return Case(index, name, ("benign: secrets inserted whole",), _dump(data), None,
                ("--backend", "local", "plan"))


# --- on the data -------------------------------------------------------------------------------

def _load(text: bytes) -> Any:
    from ruamel.yaml import YAML

    try:
        data = YAML(typ="safe", pure=True).load(text)
        if _too_big(data):  # an alias bomb seed: its text is mutated, never its data
            return None
        json.dumps(data)  # plain data only (no dates, sets, recursion)
    except Exception:
        return None
    return data if isinstance(data, dict) else None


def _too_big(data: Any, limit: int = 10_000) -> bool:
    """True if `data` holds more than `limit` values once its aliases are expanded."""
    stack, seen = [data], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > limit:
            return True
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _dump(data: Any) -> bytes:
    """Block-style YAML of plain data; scalars written as JSON, which YAML reads the same.

    Written here rather than by ruamel's pure-Python writer: a thousand cases must be cheap.
    """
    out: list[str] = []
    _emit(data, 0, out)
    return "".join(out).lstrip("\n").encode("utf-8", errors="surrogatepass") + b"\n"


def _emit(value: Any, indent: int, out: list[str]) -> None:
    pad = "\n" + " " * indent
    if isinstance(value, dict) and value:
        for key, child in value.items():
            out.append(f"{pad}{json.dumps(str(key))}:")
            _emit(child, indent + 2, out)
    elif isinstance(value, list) and value:
        for child in value:
            out.append(f"{pad}-")
            _emit(child, indent + 2, out)
    else:
        out.append(" " + _scalar(value))


def _scalar(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, float) and value != value:
        return ".nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return ".inf" if value > 0 else "-.inf"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)


def _nodes(data: Any) -> list[tuple[Any, Any]]:
    """(container, key or index) of every value under `data`."""
    found = []
    stack = [data]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) \
            if isinstance(node, list) else ()
        for key, child in items:
            found.append((node, key))
            stack.append(child)
    return found


def _value(rng: random.Random) -> Any:
    kind = rng.randrange(7)
    if kind == 0:
        return rng.choice(NUMBERS)
    if kind == 1:
        return rng.choice(STRINGS)
    if kind == 2:
        return _template(rng)
    if kind == 3:
        return rng.choice(PATHS)
    if kind == 4:
        return rng.choice([None, [], {}, [1, "a"], {"a": 1}, {"type": "mpi"}])
    if kind == 5:
        return {rng.choice([*STRINGS, "type", "name", "vm_size"]): rng.choice(NUMBERS)}
    return [_template(rng)]


def _template(rng: random.Random) -> str:
    return rng.choice(HOSTILE_TEMPLATES if rng.random() < 0.15 else TEMPLATES)


def _mutate_data(rng: random.Random, data: dict[str, Any]) -> str:
    nodes = _nodes(data)
    if not nodes:
        data["extra"] = _value(rng)
        return "add a top-level key"
    container, key = rng.choice(nodes)
    op = rng.randrange(9)
    if op == 0:
        del container[key]
        return f"delete {key!r}"
    if op == 1:
        container[key] = rng.choice(NUMBERS)
        return f"number at {key!r}"
    if op == 2:
        container[key] = rng.choice(STRINGS)
        return f"string at {key!r}"
    if op == 3:
        container[key] = _template(rng)
        return f"template at {key!r}"
    if op == 4:
        container[key] = rng.choice(PATHS)
        return f"path at {key!r}"
    if op == 5 and isinstance(container, dict):
        new_key = rng.choice([str(key)[:-1] or "x", str(key) + "s", rng.choice(STRINGS),
                              "unknown_field"])
        container[new_key] = container.pop(key)
        return f"rename {key!r}"
    if op == 6:
        container[key] = _value(rng)
        return f"type swap at {key!r}"
    if op == 7:
        other, other_key = rng.choice(nodes)
        container[key] = json.loads(json.dumps(other[other_key]))
        return f"copy a subtree to {key!r}"
    data.setdefault("vars", {})
    if isinstance(data["vars"], dict):
        data["vars"]["s"] = "{{ secret_env('K') }}"
        data["vars"][rng.choice(["nodes", "x", "k"])] = rng.choice(SECRET_TEMPLATES)
    return "secret in vars"


# --- on the text -------------------------------------------------------------------------------

def _mutate_text(rng: random.Random, text: bytes) -> tuple[bytes, str]:
    lines = text.split(b"\n")
    where = rng.randrange(len(lines))
    # an alias bomb costs a few hundred milliseconds before it is refused: one case in 40
    op = rng.choice([0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11] * 4 + [2])
    if op == 0:
        values = [i for i, line in enumerate(lines) if b": " in line]
        if values:
            i = rng.choice(values)
            head = lines[i].split(b": ", 1)[0]
            lines[i] = head + b": " + rng.choice(TAGS).encode()
        return b"\n".join(lines), "YAML tag"
    if op == 1:
        return text + b"\nextra: &a [1, 2]\nmore: *a\nmerged: {<<: *a}\n", "anchors and aliases"
    if op == 2:
        bomb = [b"vars:", b"  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        bomb += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]".encode()
                 for i in range(1, 9)]
        return b"\n".join(bomb) + b"\n" + text, "alias bomb"
    if op == 3:
        return text + b"\nname: twice\nname: again\n", "duplicate key"
    if op == 4:
        return text[:rng.randrange(len(text) + 1)], "truncated"
    if op == 5:
        position = rng.randrange(len(text) + 1)
        junk = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b"\xef\xbb\xbf",
                           b"\x1b[2J"])
        return text[:position] + junk + text[position:], "invalid bytes"
    if op == 6:
        return text.replace(b"  ", b"\t", 1), "tab indentation"
    if op == 7:
        depth = rng.choice([70, 300, 2000])
        return text + b"\ndeep: " + b"[" * depth + b"]" * depth + b"\n", "deep nesting"
    if op == 8:
        lines[where] = lines[where] + b" #" + b"x" * 200_000
        return b"\n".join(lines), "long line"
    if op == 9:
        return text + b"\nloop: &l [*l]\n", "self alias"
    if op == 10:
        return text.replace(b"\n", b"\r"), "CR line ends"
    return b"--- \n" + text + b"\n---\nsecond: document\n", "two documents"


def _var_file(rng: random.Random) -> bytes:
    data: Any = {"nodes": rng.choice([2, *NUMBERS]), "train_steps": rng.choice(NUMBERS),
                 "s": "{{ secret_env('K') }}", rng.choice(["x", "k", ""]): _value(rng)}
    if rng.random() < 0.15:
        data = rng.choice([[1, 2], "text", None, 3])
    text = _dump(data)
    if rng.random() < 0.3:
        text, _ = _mutate_text(rng, text)
    return text
