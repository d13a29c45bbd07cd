"""The gitignore matcher agrees with git itself on the same tree and the same .gitignore."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from upload_helpers import write

from amlctl.uploads.ignore import IgnoreRules
from amlctl.uploads.scan import scan_tree

PATTERNS = """\
# comment line, then a blank one

*.log
!important.log
/top-only.txt
build/
docs/**/draft-*
**/cache
a/**/z.bin
data/*.tmp
[abc]x.dat
[!m]y.dat
n[0-9].bin
q?.txt
\\#hash.txt
\\!bang.txt
trailing-space.txt{SPACES}
deep/nested/dir/
*.[Oo][Bb][Jj]
""".replace("{SPACES}", "   ")  # trailing spaces are ignored by git

FILES = [
    "x.log", "sub/y.log", "important.log", "sub/important.log",
    "root-only.txt", "sub/top-only.txt",
    "build/out.o", "sub/build/out.o", "buildx/keep.txt",
    "docs/draft-1.md", "docs/a/b/draft-2.md", "docs/final.md",
    "cache/x", "sub/cache/y", "sub/cachex/z",
    "a/z.bin", "a/b/c/z.bin", "b/a/z.bin",
    "data/t.tmp", "data/sub/t.tmp", "data.tmp",
    "ax.dat", "dx.dat", "my.dat", "ny.dat",
    "n1.bin", "na.bin", "q1.txt", "q12.txt",
    "#hash.txt", "!bang.txt", "trailing-space.txt",
    "deep/nested/dir/f", "deep/nested/file",
    "m.obj", "m.OBJ", "m.ObX",
]


def test_matcher_agrees_with_git_ls_files(tmp_path: Path) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.fail("git is not on PATH: this test compares the matcher with git ls-files; "
                    "install git (e.g. apt-get install git)", pytrace=False)
    write(tmp_path, dict.fromkeys(FILES, "x"))
    write(tmp_path, {".gitignore": PATTERNS})
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
           "HOME": str(tmp_path)}
    subprocess.run([git, "init", "-q", str(tmp_path)], check=True, env=env)
    listed = subprocess.run(
        [git, "ls-files", "--others", "--exclude-standard"],
        cwd=tmp_path, check=True, capture_output=True, text=True, env=env,
    ).stdout.splitlines()
    git_kept = sorted(p.strip('"').replace("\\#", "#") for p in listed)
    ours = sorted(f.relpath for f in scan_tree(tmp_path, ("/.git/",)).files)
    assert ours == git_kept
    # and the tree really exercises the rules: some files kept, many left out
    assert 10 < len(ours) < len(FILES)


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "expected"),
    [
        ("*.txt", "a/b.txt", False, True),
        ("a/*.txt", "a/b/c.txt", False, False),  # * does not cross a slash
        ("logs/", "logs", False, False),  # folder-only pattern, file path
        ("logs/", "x/logs", True, True),
        ("/logs", "x/logs", True, False),  # anchored
        ("**", "anything/at/all", False, True),
        ("a/**", "a", True, False),
        ("a/**", "a/b", False, True),
        ("[z-a]", "b", False, False),
        ("[/]x", "/x", False, False),
        ("foo\\", "foo", False, False),  # invalid: trailing backslash
        ("x[", "x[", False, True),  # unclosed bracket is literal
        ("sp\\ ", "sp ", False, True),
    ],
)
def test_single_patterns(pattern: str, path: str, is_dir: bool, expected: bool) -> None:
    assert IgnoreRules([pattern]).ignored(path, is_dir) is expected


def test_no_patterns_is_falsy() -> None:
    assert not IgnoreRules(["", "# only a comment"])
