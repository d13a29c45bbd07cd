"""statedb.replace_rows: many rows a statement, as executemany would write them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from amlctl import statedb


def test_rows_are_written_in_statements_of_many_the_last_of_a_key_winning(
        tmp_path: Path) -> None:
    conn = statedb.connect(tmp_path / "t.db", "test database",
                           schema=("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER, s TEXT)",))
    conn.execute("INSERT INTO t VALUES ('old', 1, 'kept'), ('k00007', -1, 'replaced')")
    # two full statements and a part of one, the same key twice in different statements
    count = 2 * statedb.ROWS_PER_STATEMENT + 17
    rows = [(f"k{i:05d}", i, "x" * (i % 5)) for i in range(count)]
    rows.append(("k00003", 33, "last"))
    with conn:
        conn.execute("BEGIN")
        statedb.replace_rows(conn, "t", rows)
        statedb.replace_rows(conn, "t", [])
    expected = {k: (n, s) for k, n, s in rows} | {"old": (1, "kept")}
    assert {k: (n, s) for k, n, s in conn.execute("SELECT k, n, s FROM t")} == expected
    conn.close()


def test_a_failing_row_writes_none_of_its_transaction(tmp_path: Path) -> None:
    conn = statedb.connect(tmp_path / "t.db", "test database",
                           schema=("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL)",))
    rows: list[tuple[object, ...]] = [(f"k{i}", i) for i in range(statedb.ROWS_PER_STATEMENT + 3)]
    rows[-1] = ("bad", None)
    with pytest.raises(sqlite3.IntegrityError), conn:
        conn.execute("BEGIN")
        statedb.replace_rows(conn, "t", rows)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    conn.close()
