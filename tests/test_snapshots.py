"""Parquet copies of a service's tables: readable beside the writer, whole or not at all."""

from __future__ import annotations

import duckdb

from shared.volume.snapshots import TableSnapshots


def test_copies_are_written_when_due_and_read_while_the_writer_holds_the_file(tmp_path):
    writer = duckdb.connect(str(tmp_path / "journal.duckdb"))
    writer.execute("CREATE TABLE decisions (client_id VARCHAR, units INTEGER)")
    writer.execute("INSERT INTO decisions VALUES ('a', 1), ('b', -1)")
    copies = TableSnapshots(tmp_path / "export", ("decisions",), every_seconds=60.0)
    assert copies.write(writer, now=100.0)
    writer.execute("INSERT INTO decisions VALUES ('c', 1)")
    assert not copies.write(writer, now=130.0)  # not yet due: the copy stays as it was
    read = duckdb.sql(f"SELECT client_id FROM '{tmp_path / 'export' / 'decisions.parquet'}' ORDER BY 1").fetchall()
    assert read == [("a",), ("b",)]
    assert copies.write(writer, now=161.0)
    assert duckdb.sql(f"SELECT count(*) FROM '{tmp_path / 'export' / 'decisions.parquet'}'").fetchall()[0][0] == 3
    assert [p.name for p in (tmp_path / "export").iterdir()] == ["decisions.parquet"]  # no temp file left
    writer.close()
