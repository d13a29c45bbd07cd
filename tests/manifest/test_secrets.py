"""A secret stays opaque through every template operation.

Templates see a secret only as a token: an operation that moves it whole (into text, a join)
gives a secret, restored and redacted after rendering; an operation that would read it
(slice, compare, filter, method, test) is refused. Either way its value appears in no output,
no message and no file amlctl writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from amlctl.manifest.template import Renderer, SecretUseError, SensitiveStr, TemplateError

CANARY = "Canary-7f3e9!x"
ENVIRON = {"K": CANARY, "PLAIN": "plain-value"}

# Operations that insert the secret whole, with what the value becomes once restored.
WHOLE: list[tuple[str, Any]] = [
    ("{{ secret_env('K') }}", CANARY),
    ("{{ vars.k }}", CANARY),
    ("{{ (vars.k) }}", CANARY),
    ("{% for v in vars.values() %}{{ v }}{% endfor %}", f"{CANARY}2abc"),
    ("{{ vars.values()|join }}", f"{CANARY}2abc"),
    ("{{ vars.values()|join(',') }}", f"{CANARY},2,abc"),
    ("{% for k, v in vars.items() %}{{ k }}={{ v }};{% endfor %}", f"k={CANARY};n=2;name=abc;"),
    ("{{ '%s'|format(vars.k) }}", CANARY),
    ("{{ '%s' % vars.k }}", CANARY),
    ("{{ '%(a)s' % {'a': vars.k} }}", CANARY),
    ("{{ '{}'.format(vars.k) }}", CANARY),
    ("{{ '{0}-{0}'.format(vars.k) }}", f"{CANARY}-{CANARY}"),
    ("{{ 'a' ~ vars.k }}", f"a{CANARY}"),
    ("{{ 'a' + vars.k }}", f"a{CANARY}"),
    ("{{ vars.k + 'b' }}", f"{CANARY}b"),
    ("{{ vars.k * 2 }}", CANARY * 2),
    ("pre-{{ vars.k }}-post", f"pre-{CANARY}-post"),
    ("{{ vars.k|string }}", CANARY),
    ("{{ vars.k|safe }}", CANARY),
    ("{{ vars.k|default('x') }}", CANARY),
    ("{{ vars.get('k') }}", CANARY),
    ("{{ vars['k'] }}", CANARY),
    ("{{ namespace(a=vars.k).a }}", CANARY),
    ("{% set x %}<{{ vars.k }}>{% endset %}{{ x }}", f"<{CANARY}>"),
    ("{% set x = vars.k %}{{ x ~ x }}", CANARY * 2),
    ("{% macro m(a) %}[{{ a }}]{% endmacro %}{{ m(vars.k) }}", f"[{CANARY}]"),
    ("{{ [vars.k]|first }}", CANARY),
    ("{{ [vars.k]|last }}", CANARY),
    ("{{ [vars.k, 'z']|join('|') }}", f"{CANARY}|z"),
    ("{{ dict(vars).k }}", CANARY),
    ("{{ vars.k if true else 'x' }}", CANARY),
    ("{{ ['a', vars.k]|select('string')|join }}", f"a{CANARY}"),
    ("{{ vars.values()|list|join('/') }}", f"{CANARY}/2/abc"),
    ("{{ vars.items()|map('last')|join }}", f"{CANARY}2abc"),
    ("{{ [vars.k]|reverse|first }}", CANARY),
]

# Operations that would read the secret's text: refused while rendering.
READING = [
    "{{ vars.k[1:] }}", "{{ vars.k[0] }}", "{{ vars.k[-1] }}", "{{ vars.k|upper }}",
    "{{ vars.k|lower }}", "{{ vars.k|title }}", "{{ vars.k|capitalize }}", "{{ vars.k|trim }}",
    "{{ vars.k|list }}", "{{ vars.k|first }}", "{{ vars.k|last }}", "{{ vars.k|length }}",
    "{{ vars.k|count }}", "{{ vars.k|reverse }}", "{{ vars.k|sort }}", "{{ vars.k|unique|list }}",
    "{{ vars.k|truncate(4) }}", "{{ vars.k|wordcount }}", "{{ vars.k|center(40) }}",
    "{{ vars.k|indent }}", "{{ vars.k|replace('C', 'c') }}", "{{ vars.k|int }}",
    "{{ vars.k|float }}", "{{ vars.k|striptags }}", "{{ vars.k|urlize }}", "{{ vars.k|wordwrap }}",
    "{{ vars.k|urlencode }}", "{{ vars.k|batch(2)|list }}", "{{ vars.k|slice(2)|list }}",
    "{{ vars.k|map('upper')|list }}", "{{ vars.k|join }}", "{{ vars.k|min }}", "{{ vars.k|max }}",
    "{{ vars.k|random }}", "{{ vars.k|attr('upper') }}", "{{ vars.k|format(1) }}",
    "{{ vars.k|filesizeformat }}", "{{ vars.k|xmlattr }}", "{{ vars.k|dictsort }}",
    "{{ vars.k|groupby('x') }}", "{{ vars.k|items }}", "{{ vars.k|tojson|length }}",
    "{{ vars.k.upper() }}", "{{ vars.k.split('-') }}", "{{ vars.k.startswith('C') }}",
    "{{ vars.k.encode() }}", "{{ vars.k.__class__ }}", "{{ vars.k == 'x' }}",
    "{{ 'x' == vars.k }}", "{{ vars.k != 'x' }}", "{{ vars.k < 'x' }}", "{{ vars.k >= 'x' }}",
    "{{ 'C' in vars.k }}", "{% if vars.k %}y{% endif %}", "{{ vars.k and 1 }}",
    "{{ not vars.k }}", "{% for c in vars.k %}{{ c }}{% endfor %}", "{{ vars.k is upper }}",
    "{{ vars.k is lower }}", "{{ vars.k is eq('x') }}", "{{ vars.k is in('abc') }}",
    "{{ vars.k is sequence }}", "{{ '%.3s' % vars.k }}", "{{ '%(a).3s' % {'a': vars.k} }}",
    "{{ vars.k % 1 }}", "{{ '{:.3}'.format(vars.k) }}", "{{ '{:>40}'.format(vars.k) }}",
    "{{ '{0[0]}'.format(vars.k) }}", "{{ '{0.upper}'.format(vars.k) }}",
    "{{ (vars.k ~ '')|truncate(5) }}", "{{ ('%s' % vars.k)[:3] }}", "{{ (vars.k|safe)|upper }}",
    "{{ (vars.k|string)|list }}", "{{ [vars.k]|string|truncate(9) }}",
    "{{ [vars.k]|join|replace('C', 'c') }}", "{{ vars|tojson|replace('C', 'c') }}",
    "{{ vars.values()|map('upper')|join }}", "{{ vars.values()|select('equalto', 'x')|list }}",
    "{{ vars|dictsort(by='value') }}", "{{ [vars.k, 'a']|sort }}",
    "{{ [vars.k]|map('length')|list }}",
    "{{ vars.items()|list|string|upper }}", "{% set x %}{{ vars.k }}{% endset %}{{ x|lower }}",
    "{% set x %}{{ vars.k }}{% endset %}{{ x[2:] }}", "{{ env(vars.k) }}",
    "{{ env(secret_env('K')) }}", "{{ env('PLAIN', secret_env('K')) }}",
    "{{ secret_env(vars.k) }}", "{{ secret_env(secret_env('K')) }}",
    "{{ range(vars.k) }}", "{{ vars.k|int(base=16) }}",
    # encoders cannot encode what they cannot see; a list or mapping printed whole is encoded
    "{{ vars|tojson }}", "{{ vars.k|tojson }}", "{{ vars|urlencode }}", "{{ vars.k|e }}",
    "{{ vars.k|escape }}", "{{ vars.k|forceescape }}", "{{ vars|pprint }}", "{{ vars|string }}",
    "{{ vars.items()|list|string }}", "x{{ vars }}", "x{{ vars.values()|list }}",
    "{{ [vars.k] ~ '' }}", "{{ '%s' % [vars.k] }}", "{{ '%s' % {'a': vars.k} }}",
    "{{ '%r' % vars.k }}", "{{ '{!r}'.format(vars.k) }}", "{{ '{}'.format([vars.k]) }}",
    "{{ vars|xmlattr }}", "{{ {vars.k: 1} }}", "{{ dict([(vars.k, 1)]) }}",
    "{{ [vars.k]|sort }}", "{{ [vars.k]|unique|list }}",
    "{{ [vars.k]|min }}", "{{ vars|dictsort }}", "{{ [vars.k]|sum }}",
]


def renderer() -> Renderer:
    r = Renderer({}, environ=ENVIRON)
    r.set_vars({"k": r.render("{{ secret_env('K') }}"), "n": 2, "name": "abc"})
    return r


def shows_canary(value: Any) -> bool:
    """True if the canary is readable in `value` anywhere but inside a SensitiveStr."""
    if isinstance(value, SensitiveStr):
        return False
    if isinstance(value, dict):
        return any(shows_canary(k) or shows_canary(v) for k, v in value.items())
    if isinstance(value, list):
        return any(shows_canary(v) for v in value)
    return CANARY in repr(value) or CANARY in str(value)


def test_the_operations_cover_both_kinds() -> None:
    assert len(WHOLE) >= 35 and len(READING) >= 100


@pytest.mark.parametrize(("text", "expected"), WHOLE, ids=[w[0] for w in WHOLE])
def test_a_whole_insertion_is_a_secret(text: str, expected: str) -> None:
    value = renderer().render(text)
    assert isinstance(value, SensitiveStr), repr(value)
    assert str.__str__(value) == expected
    assert repr(value) == "'(sensitive)'"


@pytest.mark.parametrize("text", READING)
def test_reading_a_secret_is_refused_without_showing_it(text: str) -> None:
    with pytest.raises(TemplateError) as caught:
        renderer().render(text)
    assert CANARY not in str(caught.value)
    assert "SECRET" not in str(caught.value), "a token must not show in a message either"


def test_a_refusal_says_what_was_refused() -> None:
    with pytest.raises(SecretUseError, match="but not read by the filter 'upper'"):
        renderer().render("{{ vars.k|upper }}")
    with pytest.raises(SecretUseError, match="env\\(\\) takes the name of a variable, not a "
                                             "secret"):
        renderer().render("{{ env(secret_env('K')) }}")


def test_plain_values_next_to_a_secret_stay_plain() -> None:
    r = renderer()
    assert r.render("{{ vars.n + 1 }}") == 3
    assert r.render("{{ vars.name|upper }}") == "ABC"
    assert r.render("{{ vars.keys()|list }}") == ["k", "n", "name"]
    value = r.render("{{ vars.items()|list }}")
    assert value[0][0] == "k" and isinstance(value[0][1], SensitiveStr)
    assert not shows_canary(value)


def test_a_native_list_or_mapping_keeps_its_secrets_as_secrets() -> None:
    r = renderer()
    assert r.render("{{ vars }}") == {"k": CANARY, "n": 2, "name": "abc"}
    assert isinstance(r.render("{{ vars }}")["k"], SensitiveStr)
    values = r.render("{{ vars.values()|list }}")
    assert isinstance(values[0], SensitiveStr) and values[1:] == [2, "abc"]


def test_a_missing_secret_is_a_token_too() -> None:
    r = Renderer({}, environ={}, allow_missing_secrets=True)
    assert r.render("x{{ secret_env('NOPE') }}y") == "xy"
    assert isinstance(r.render("x{{ secret_env('NOPE') }}y"), SensitiveStr)
    with pytest.raises(SecretUseError):
        r.render("{{ secret_env('NOPE')|length }}")


# --- through the command line: output, messages and files ----------------------------------

MANIFEST = """\
version: 1
name: demo
vars:
  k: "{{{{ secret_env('K') }}}}"
  n: 2
  name: abc
workspace:
  name: demo-ws
  subscription_id: "0"
  resource_group: rg
  location: westeurope
datastores:
{datastores}
"""


def datastores(templates: list[str]) -> str:
    return "".join(
        f"  d{i}:\n    type: azure_blob\n    account_name: acct\n    container_name: c{i}\n"
        f"    sas_token: {json_string(text)}\n"
        for i, text in enumerate(templates)
    )


def json_string(text: str) -> str:
    import json

    return json.dumps(text)


def files_holding(folder: Path, needle: bytes) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_no_command_shows_or_stores_a_secret_inserted_whole(
    project: Path, amlctl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("K", CANARY)
    whole = [text for text, _ in WHOLE if "secret_env" not in text or text.startswith("{{ s")]
    (project / "amlctl.yaml").write_text(MANIFEST.format(datastores=datastores(whole)))
    outputs = []
    for args in (["validate"], ["render"], ["plan"], ["plan", "--json"],
                 ["plan", "--out", "p.plan"], ["apply", "--auto-approve"],
                 ["show", "datastore.d0"], ["status"], ["plan"]):
        result = amlctl(*args)
        assert result.code in (0, 2), (args, result.stderr)
        outputs.append(result.stdout + result.stderr)
    assert not [o for o in outputs if CANARY in o]
    assert "(sensitive)" in outputs[1]
    assert files_holding(project, CANARY.encode()) == []


def test_no_message_shows_a_secret_read_by_a_template(
    project: Path, amlctl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("K", CANARY)
    (project / "amlctl.yaml").write_text(MANIFEST.format(datastores=datastores(READING)))
    for command in ("validate", "render", "plan"):
        result = amlctl(command)
        assert result.code == 1
        assert result.stderr.count("\n") == len(READING) + 1
        assert CANARY not in result.stdout + result.stderr
    assert not (project / ".amlctl").exists()


@pytest.mark.parametrize("field", ["source_directory", "entry_script", "compute", "experiment"])
def test_a_secret_in_a_plain_field_is_refused_without_being_quoted(
    project: Path, amlctl, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    # the later checks (folder exists, reference defined) quote the value: they must not run
    monkeypatch.setenv("K", CANARY)
    run = {"experiment": "e", "compute": "cpu", "source_directory": "src",
           "entry_script": "train.py", field: "{{ secret_env('K') }}"}
    (project / "amlctl.yaml").write_text(
        MANIFEST.format(datastores="  {}").replace("datastores:\n  {}\n", "")
        + "computes:\n  cpu: {vm_size: Standard_D2_v3, max_nodes: 1}\nexperiments:\n  e: {}\n"
        + "runs:\n  train:\n" + "".join(f"    {k}: {json_string(v)}\n" for k, v in run.items())
    )
    result = amlctl("validate")
    assert result.code == 1
    assert result.stderr.splitlines()[0].endswith(
        f"runs.train.{field}: secret_env() may only be used for secret fields (account_key, "
        "sas_token, admin_user_password, env_vars)")
    assert CANARY not in result.stdout + result.stderr
