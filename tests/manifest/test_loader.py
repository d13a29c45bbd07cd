"""The loader on its own: positions, anchors and merge keys, hints, templating, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from amlctl.errors import ManifestError
from amlctl.manifest.loader import load_manifest
from amlctl.manifest.template import SensitiveStr

WORKSPACE = """\
version: 1
name: demo
workspace:
  name: demo-ws
  subscription_id: "0"
  resource_group: rg
  location: westeurope
"""


def write(folder: Path, text: str) -> Path:
    path = folder / "amlctl.yaml"
    path.write_text(text)
    return path


def errors_of(path: Path, **kwargs) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, **kwargs)
    return [str(e) for e in caught.value.errors]


def test_positions_of_keys_nested_values_and_list_items(project: Path) -> None:
    path = write(project, WORKSPACE + """\
computes:
  cpu:
    vm_size: Standard_D2_v3
    max_nodes: 2
experiments:
  mnist: {}
runs:
  train:
    experiment: mnist
    compute: cpu
    source_directory: src
    entry_script: train.py
    arguments:
      - --steps
      - 100
      - {datastore: default, path: digits}
    outputs:
    - model
""")
    loaded = load_manifest(path)
    assert loaded.positions[("workspace",)] == (3, 1)
    assert loaded.positions[("workspace", "location")] == (7, 3)
    assert loaded.positions[("computes", "cpu", "max_nodes")] == (11, 5)
    assert loaded.positions[("runs", "train", "arguments", 0)] == (21, 9)
    assert loaded.positions[("runs", "train", "arguments", 2)] == (23, 9)
    assert loaded.positions[("runs", "train", "arguments", 2, "path")] == (23, 30)
    assert loaded.positions[("runs", "train", "outputs", 0)] == (25, 7)


def test_error_in_a_list_item_points_at_the_item(project: Path) -> None:
    path = write(project, WORKSPACE + """\
computes:
  cpu: {vm_size: Standard_D2_v3, max_nodes: 2}
experiments:
  mnist: {}
runs:
  train:
    experiment: mnist
    compute: cpu
    source_directory: src
    entry_script: train.py
    arguments:
      - --data
      - {datastore: nowhere, path: digits}
""")
    assert errors_of(path) == [
        f"{path}:20:10: runs.train.arguments.1.datastore: unknown datastore 'nowhere' "
        "(defined: default)",
    ]


def test_merge_keys_share_defaults(project: Path) -> None:
    path = write(project, WORKSPACE + """\
computes:
  cpu: &cluster
    vm_size: Standard_D2_v3
    vm_priority: lowpriority
    max_nodes: 2
  big-cpu:
    <<: *cluster
    vm_size: Standard_D16_v3
    max_nodes: 8
  copy: *cluster
""")
    computes = load_manifest(path).manifest.computes
    assert computes["big-cpu"].vm_size == "Standard_D16_v3"
    assert computes["big-cpu"].vm_priority == "lowpriority"
    assert computes["big-cpu"].max_nodes == 8
    assert computes["copy"] == computes["cpu"]


def test_an_error_inside_an_anchor_points_at_the_anchor(project: Path) -> None:
    path = write(project, WORKSPACE + """\
computes:
  cpu: &cluster
    vm_size: Standard_D2_v3
    max_nodes: 0
  more:
    <<: *cluster
    vm_size: Standard_D4_v3
""")
    assert errors_of(path) == [
        f"{path}:11:5: computes.cpu.max_nodes: must be greater than or equal to 1 (got 0)",
        f"{path}:11:5: computes.more.max_nodes: must be greater than or equal to 1 (got 0)",
    ]


@pytest.mark.parametrize(("typo", "hint"), [
    ("vm_sise", "vm_size"),
    ("maxnodes", "max_nodes"),
    ("min_node", "min_nodes"),
    ("vm_prority", "vm_priority"),
    ("idle_seconds", "idle_seconds_before_scaledown"),
])
def test_unknown_field_suggests_the_closest(project: Path, typo: str, hint: str) -> None:
    path = write(project, WORKSPACE + f"""\
computes:
  cpu:
    vm_size: Standard_D2_v3
    max_nodes: 2
    {typo}: 1
""")
    assert errors_of(path) == [
        f"{path}:12:5: computes.cpu.{typo}: unknown field '{typo}' (did you mean '{hint}'?)",
    ]


def test_unknown_field_in_a_union_member_suggests_too(project: Path) -> None:
    path = write(project, WORKSPACE + """\
datastores:
  images: {type: azure_file, account_name: a, share: images}
""")
    assert errors_of(path) == [
        f"{path}:9:3: datastores.images.share_name: required field 'share_name' is missing",
        f"{path}:9:47: datastores.images.share: unknown field 'share' (did you mean 'share_name'?)",
    ]


def test_single_expression_keeps_its_native_type(project: Path) -> None:
    path = write(project, WORKSPACE.replace("version: 1\n", "version: 1\nvars:\n  nodes: 3\n"
                                            "  gpu: true\n") + """\
computes:
  cpu:
    vm_size: Standard_D2_v3
    max_nodes: "{{ vars.nodes }}"
    min_nodes: "{{ vars.nodes - 2 }}"
    description: "{{ vars.nodes }} nodes"
""")
    loaded = load_manifest(path)
    cpu = loaded.data["computes"]["cpu"]
    assert cpu["max_nodes"] == 3 and type(cpu["max_nodes"]) is int
    assert cpu["min_nodes"] == 1
    assert cpu["description"] == "3 nodes"
    assert loaded.data["vars"] == {"nodes": 3, "gpu": True}


def test_var_overrides_and_var_files(project: Path) -> None:
    (project / "prod.yaml").write_text("nodes: 5\nregion: northeurope\n")
    path = write(project, WORKSPACE.replace("location: westeurope",
                                            "location: \"{{ vars.region }}\"")
                 .replace("version: 1\n", "version: 1\nvars:\n  nodes: 2\n  region: x\n")
                 + "computes:\n  cpu: {vm_size: Standard_D2_v3, max_nodes: \"{{ vars.nodes }}\"}\n")
    loaded = load_manifest(path, var_files=[project / "prod.yaml"], var_overrides={"nodes": 7})
    assert loaded.manifest.computes["cpu"].max_nodes == 7
    assert loaded.manifest.workspace.location == "northeurope"


def test_env_function_reads_the_environment_with_a_default(project: Path) -> None:
    path = write(project, WORKSPACE.replace(
        'subscription_id: "0"', "subscription_id: \"{{ env('SUB', 'none') }}\""
    ).replace("resource_group: rg", "resource_group: \"{{ env('RG') }}\""))
    loaded = load_manifest(path, environ={"RG": "rg-from-env"})
    assert loaded.manifest.workspace.subscription_id == "none"
    assert loaded.manifest.workspace.resource_group == "rg-from-env"


def test_secret_is_sensitive_and_needs_its_variable(project: Path) -> None:
    path = write(project, WORKSPACE + """\
datastores:
  images:
    type: azure_blob
    account_name: mystorage
    container_name: images
    account_key: "{{ secret_env('KEY') }}"
""")
    loaded = load_manifest(path, environ={"KEY": "hunter22"})
    key = loaded.data["datastores"]["images"]["account_key"]
    assert isinstance(key, SensitiveStr)
    assert repr(key) == "'(sensitive)'"
    assert loaded.manifest.datastores["images"].account_key.get_secret_value() == "hunter22"
    assert "hunter22" not in repr(loaded.manifest)

    assert errors_of(path, environ={}) == [
        f"{path}:13:5: datastores.images.account_key: secret environment variable KEY is not set",
    ]
    tolerant = load_manifest(path, environ={}, allow_missing_secrets=True)
    assert tolerant.missing_secrets == ["KEY"]


PLACEMENT = ("secret_env() may only be used for secret fields (account_key, sas_token, "
             "admin_user_password, env_vars)")
OPAQUE = "secret values are opaque to templates: they can be inserted whole"


@pytest.mark.parametrize(("laundered", "message"), [
    # inserted whole: the result is a secret, refused in a field that is not secret
    ("{{ vars.key }}", PLACEMENT),
    ("prefix-{{ vars.key }}", PLACEMENT),
    ("{{ vars.group.key ~ '' }}", PLACEMENT),
    ("{{ vars.group.values() | join }}", PLACEMENT),
    # looked into: refused while rendering
    ("{{ vars['key'] | upper }}", f"{OPAQUE} (alone, in text, joined) but not "
                                  "read by the filter 'upper'"),
    ("{{ vars.key | reverse | join }}", f"{OPAQUE} (alone, in text, joined) but not "
                                        "read by the filter 'reverse'"),
    ("{{ vars.key | length }}", f"{OPAQUE} (alone, in text, joined) but not "
                                "read by the filter 'length'"),
    ("{% for c in vars.key %}{{ c }}{% endfor %}", f"{OPAQUE} (alone, in text, "
                                                   "joined) but not iterated over"),
    # a mapping holding a secret is no tag value at all
    ("{{ vars.group }}", "must be a string (got a mapping)"),
])
def test_a_secret_cannot_be_laundered_through_vars(
    project: Path, laundered: str, message: str
) -> None:
    path = write(project, WORKSPACE.replace("version: 1\n", """\
version: 1
vars:
  key: "{{ secret_env('KEY') }}"
  group: {key: "{{ secret_env('KEY') }}"}
""") + f"""\
experiments:
  mnist:
    tags: {{copy: "{laundered}"}}
""")
    assert errors_of(path, environ={"KEY": "hunter2"}) == [
        f"{path}:13:12: experiments.mnist.tags.copy: {message}",
    ]


def test_plain_variables_are_not_mistaken_for_secrets(project: Path) -> None:
    path = write(project, WORKSPACE.replace("version: 1\n", """\
version: 1
vars:
  key: "{{ secret_env('KEY') }}"
  team: vision
""") + """\
experiments:
  mnist:
    tags: {team: "{{ vars.team }}", label: "team-{{ vars.team | upper }}"}
""")
    loaded = load_manifest(path, environ={"KEY": "hunter2"})
    tags = loaded.data["experiments"]["mnist"]["tags"]
    assert tags == {"team": "vision", "label": "team-VISION"}
    assert not any(isinstance(v, SensitiveStr) for v in tags.values())


def test_errors_come_in_file_order_across_phases(project: Path) -> None:
    path = write(project, WORKSPACE.replace("name: demo-ws", "name: x") + """\
computes:
  cpu: {vm_size: Standard_D2_v3, max_nodes: 1, min_nodes: 2}
uploads:
  digits: {datastore: nowhere, src_dir: data, target_path: digits}
""")
    lines = [int(e.split(":")[1]) for e in errors_of(path)]
    assert lines == sorted(lines) and len(lines) == 3


def test_warnings_do_not_fail_the_manifest(project: Path) -> None:
    path = write(project, WORKSPACE + """\
computes:
  old: {vm_size: Standard_NC6, max_nodes: 1}
  odd: {vm_size: Standard_D2_v33, max_nodes: 1}
""")
    warnings = [str(w) for w in load_manifest(path).warnings]
    assert len(warnings) == 2
    assert "retired" in warnings[0] and "Standard_NC6" in warnings[0]
    assert "unknown VM size 'Standard_D2_v33'" in warnings[1]


def test_var_file_is_bounded_like_a_manifest(project: Path) -> None:
    from amlctl.manifest.loader import MAX_FILE_BYTES

    path = write(project, WORKSPACE)
    big = project / "vars.yaml"
    big.write_text("nodes: 2\n" + "# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    size = big.stat().st_size
    assert errors_of(path, var_files=[big]) == [
        f"{big}: file is {size} bytes; the limit is {MAX_FILE_BYTES} bytes for a var file",
    ]


def test_var_file_alias_bomb_is_refused(project: Path) -> None:
    path = write(project, WORKSPACE)
    bomb = (Path(__file__).parent / "bad" / "alias_bomb.yaml").read_text()
    var_file = project / "vars.yaml"
    # the bomb's `vars:` block, one level up: a var file is a mapping of variables
    var_file.write_text("\n".join(
        line[2:] for line in bomb.splitlines() if line.startswith("  ") and "&" in line
    ) + "\n")
    errors = errors_of(path, var_files=[var_file])
    assert len(errors) == 1 and "alias bomb" in errors[0]


RUN = """\
computes:
  cpu: {vm_size: Standard_D2_v3, max_nodes: 1}
experiments:
  mnist: {}
runs:
  train:
    experiment: mnist
    compute: cpu
    source_directory: src
    entry_script: ENTRY
"""


@pytest.mark.parametrize("target", ["/etc/hostname", "../outside.py"])
def test_entry_script_may_not_lead_out_through_a_symlink(project: Path, target: str) -> None:
    (project / "outside.py").write_text("print('not in the snapshot')\n")
    (project / "src" / "link.py").symlink_to(target)
    path = write(project, WORKSPACE + RUN.replace("ENTRY", "link.py"))
    assert errors_of(path) == [
        f"{path}:17:5: runs.train.entry_script: 'link.py' leads outside source_directory "
        "'src' (through a symbolic link)",
    ]


def test_entry_script_may_be_a_symlink_inside_the_folder(project: Path) -> None:
    (project / "src" / "main.py").symlink_to("train.py")
    path = write(project, WORKSPACE + RUN.replace("ENTRY", "main.py"))
    assert load_manifest(path).manifest.runs["train"].entry_script == "main.py"


def test_a_control_character_in_a_key_is_shown_escaped(project: Path) -> None:
    path = write(project, WORKSPACE.replace("  location: westeurope\n",
                                            "  location: westeurope\n  \"\\e[31mred\": x\n"))
    assert errors_of(path) == [
        f"{path}:8:3: workspace.\\x1b[31mred: unknown field '\\x1b[31mred'",
    ]


def test_a_template_error_in_a_var_file_points_into_the_var_file(project: Path) -> None:
    path = write(project, WORKSPACE.replace("version: 1\n", "version: 1\nvars:\n  a: 1\n"))
    var_file = project / "vars.yaml"
    var_file.write_text("nodes: 2\nname: \"{{ nope }}\"\nsteps: \"{{ 'x'|center(2000000) }}\"\n")
    errors = errors_of(path, var_files=[var_file])
    assert errors == [
        f"{var_file}:2:1: name: unknown name 'nope' in template (templates know vars.NAME, "
        "env(name, default) and secret_env(name))",
        f"{var_file}:3:1: steps: a centred string of 2000000 characters or items is too large "
        "(the limit is 1048576)",
    ]
    # a --var of the same name wins, and is not reported in the file
    assert len(errors_of(path, var_files=[var_file], var_overrides={"name": "plain"})) == 1


def test_a_malformed_storage_key_fails_validation_without_showing_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Caught in the manifest, before any request: not base64 means not an account key."""
    import time

    from amlctl.manifest.loader import load_manifest

    manifest = tmp_path / "amlctl.yaml"
    manifest.write_text(
        "version: 1\nname: demo\nworkspace:\n  name: demo-ws\n  subscription_id: '0'\n"
        "  resource_group: rg\n  location: westeurope\ndatastores:\n  images:\n"
        "    type: azure_blob\n    account_name: acct\n    container_name: images\n"
        "    account_key: \"{{ secret_env('KEY') }}\"\n")
    monkeypatch.setenv("KEY", "pasted-with-a-typo!")
    started = time.perf_counter()
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest)
    assert time.perf_counter() - started < 5  # no network, no retries (~0.01 s)
    message = str(info.value)
    assert ":13:5: datastores.images.account_key:" in message
    assert "not a storage account key" in message
    assert "pasted-with-a-typo" not in message
    monkeypatch.setenv("KEY", "c2VjcmV0LWtleS1ieXRlcw==")
    assert load_manifest(manifest).manifest.datastores["images"].account_key is not None
