"""Reading manifests and var files from untrusted paths: regular files only, bounded, strict UTF-8.

Each case would hang (a named pipe), eat memory (a device), or print a traceback without the
checks; each must be a one-line error, exit 1, within seconds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from amlctl.manifest.loader import MAX_FILE_BYTES

GOOD = """\
version: 1
name: demo
workspace: {name: demo-ws, subscription_id: "0", resource_group: rg, location: westeurope}
"""


def one_error(result, expected: str) -> None:
    assert result.code == 1, result
    assert result.stdout == ""
    assert result.stderr.strip().splitlines()[-1] == expected, result.stderr
    assert "Traceback" not in result.stderr


def test_a_named_pipe_is_refused_without_blocking(project: Path, amlctl) -> None:
    os.mkfifo(project / "pipe.yaml")
    (project / "amlctl.yaml").write_text(GOOD)
    started = time.perf_counter()
    one_error(amlctl("validate", "-f", "pipe.yaml"),
              "Error: manifest pipe.yaml: is a named pipe; a manifest must be a regular file")
    one_error(amlctl("--var-file", "pipe.yaml", "validate"),
              "Error: var file pipe.yaml: is a named pipe; a var file must be a regular file")
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_an_endless_device_is_refused_unread(project: Path, amlctl, device: str) -> None:
    (project / "amlctl.yaml").write_text(GOOD)
    one_error(amlctl("validate", "-f", device),
              f"Error: manifest {device}: is a device; a manifest must be a regular file")
    one_error(amlctl("--var-file", device, "validate"),
              f"Error: var file {device}: is a device; a var file must be a regular file")


def test_a_folder_is_refused(project: Path, amlctl) -> None:
    one_error(amlctl("validate", "-f", "src"),
              "Error: manifest src: is a folder; a manifest must be a regular file")


def test_an_empty_file_name_is_refused(project: Path, amlctl) -> None:
    result = amlctl("validate", "-f", "")
    assert result.code == 1
    assert "the file name is empty" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_symlink_loop_is_refused(project: Path, amlctl) -> None:
    (project / "loop.yaml").symlink_to("loop.yaml")
    one_error(amlctl("validate", "-f", "loop.yaml"), "Error: manifest loop.yaml: too many "
              "levels of symbolic links (a symlink loop?)")


def test_a_file_name_over_255_bytes_is_refused(project: Path, amlctl) -> None:
    name = "a" * 300 + ".yaml"
    result = amlctl("validate", "-f", name)
    assert result.code == 1
    assert result.stderr.endswith(
        ": file name too long (a path component is over 255 bytes?)\n"), result.stderr
    assert len(result.stderr) < 300  # the name is shortened, not printed in full


def test_a_missing_var_file_is_named(project: Path, amlctl) -> None:
    (project / "amlctl.yaml").write_text(GOOD)
    one_error(amlctl("--var-file", "nowhere.yaml", "validate"),
              "Error: var file nowhere.yaml: no such file")


def test_invalid_utf8_is_an_error_at_its_position(project: Path, amlctl) -> None:
    (project / "amlctl.yaml").write_bytes(GOOD.encode().replace(b"name: demo\n",
                                                                 b"name: d\xc3\xa9mo\xff\n"))
    result = amlctl("validate")
    assert result.code == 1
    assert result.stderr == ("amlctl.yaml:2:11: invalid UTF-8 (byte ff): save the file as UTF-8\n"
                             "1 error in the manifest\n")


def test_invalid_utf8_in_a_var_file_is_an_error_at_its_position(project: Path, amlctl) -> None:
    (project / "amlctl.yaml").write_text(GOOD)
    (project / "vars.yaml").write_bytes(b"a: 1\nb: \xfe\xfe\n")
    result = amlctl("--var-file", "vars.yaml", "validate")
    assert result.code == 1
    assert result.stderr.startswith("vars.yaml:2:4: invalid UTF-8 (byte fe)")


def test_a_file_growing_past_the_limit_is_read_no_further(project: Path, amlctl) -> None:
    # A regular file whose size is right at the limit is read; one byte more is refused.
    filler = "#" * (MAX_FILE_BYTES - len(GOOD) - 1) + "\n"
    (project / "amlctl.yaml").write_text(GOOD + filler)
    assert amlctl("validate").code == 0
    (project / "amlctl.yaml").write_text(GOOD + filler + "#")
    result = amlctl("validate")
    assert result.code == 1
    assert f"the limit is {MAX_FILE_BYTES} bytes for a manifest" in result.stderr


def test_validate_of_several_files_reports_each(project: Path, amlctl) -> None:
    (project / "good.yaml").write_text(GOOD)
    os.mkfifo(project / "pipe.yaml")
    result = amlctl("validate", "good.yaml", "pipe.yaml", "missing.yaml")
    assert result.code == 1
    assert result.stdout == "good.yaml: valid (stack 'demo', workspace 'demo-ws': 0 computes, " \
        "0 datastores, 0 uploads, 0 experiments, 0 runs)\n"
    assert result.stderr == (
        "Error: manifest pipe.yaml: is a named pipe; a manifest must be a regular file\n"
        "Error: manifest missing.yaml: no such file (use -f FILE or set AMLCTL_FILE)\n"
    )


def test_schema_to_a_folder_is_an_error(project: Path, amlctl) -> None:
    result = amlctl("schema", "-o", "src")
    assert result.code == 1
    assert result.stderr.startswith("Error: --output src: ")
    assert "Traceback" not in result.stderr


def test_a_nul_in_a_file_name_is_an_error(project: Path) -> None:
    from amlctl.errors import UsageError
    from amlctl.manifest.loader import load_manifest

    with pytest.raises(UsageError, match=r"manifest 'a\\x00b': the name contains a NUL"):
        load_manifest("a\0b")
    with pytest.raises(UsageError, match="var file 'v\\\\x00': the name contains a NUL"):
        (project / "amlctl.yaml").write_text(GOOD)
        load_manifest(project / "amlctl.yaml", var_files=["v\0"])
