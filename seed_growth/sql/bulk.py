"""Bulk transfer between PostgreSQL and Arrow tables through COPY in CSV, with no Python object per row:
a million students' rows cost seconds, not minutes and gigabytes.

Text survives whatever it holds (CSV quoting: quotes, commas, newlines, backslashes, leading zeros, ids
that look like numbers); doubles travel as shortest round-trip text both ways (PostgreSQL's float8 output
since version 12, Arrow's writer; both parsers round correctly), so they come back exact to the bit.
"""

from __future__ import annotations

import io
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg import sql


class _CopyOutStream(io.RawIOBase):
    """The bytes of a ``COPY ... TO STDOUT`` as a readable file, so that Arrow parses them as they
    arrive instead of after they have all been buffered. psycopg hands over COPY data a row at a time:
    each row is appended to one buffer at once (holding psycopg's row buffers longer is twice as slow)."""

    def __init__(self, copy: psycopg.Copy):
        self._rows = iter(copy)
        self._pending = bytearray()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        pending = self._pending
        for row in self._rows:
            pending += row
            if len(pending) >= len(target):
                break
        n = min(len(target), len(pending))
        target[:n] = pending[:n]
        del pending[:n]
        return n


class _CopyInSink(io.RawIOBase):
    """A writable file whose writes go to a ``COPY ... FROM STDIN``."""

    def __init__(self, copy: psycopg.Copy):
        self._copy = copy

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._copy.write(data)
        return len(data)


def exact_doubles(conn: psycopg.Connection) -> None:
    """Doubles written as text as their shortest exact digits until the transaction ends: PostgreSQL's
    default since version 12, unless a server or session lowered extra_float_digits."""
    conn.execute("SET LOCAL extra_float_digits = 1")


def copy_out_table(
    conn: psycopg.Connection, query: sql.Composable, schema: pa.Schema, *, work_mem: str | None = None
) -> pa.Table:
    """The rows of ``query`` (a SELECT whose columns are ``schema``'s, in order) as an Arrow table of
    exactly that schema, by one ``COPY (query) TO STDOUT`` in CSV. Text columns are never null here
    (an empty string stays one). ``work_mem``: the query's memory for sorting, for this transaction."""
    statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv, HEADER, ENCODING 'UTF8')").format(query)
    with conn.transaction(), conn.cursor() as cur:
        exact_doubles(conn)
        if work_mem is not None:
            conn.execute("SELECT set_config('work_mem', %s, true)", (work_mem,))
        with cur.copy(statement) as copy:
            return _read_csv(copy, schema)


def _read_csv(copy: psycopg.Copy, schema: pa.Schema) -> pa.Table:
    return pa_csv.read_csv(
        _CopyOutStream(copy),
        # the header is skipped (an empty result is still a CSV file), its names replaced by ours
        read_options=pa_csv.ReadOptions(skip_rows=1, column_names=schema.names),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),  # text may hold newlines
        convert_options=pa_csv.ConvertOptions(
            column_types=dict(zip(schema.names, schema.types, strict=True)),
            null_values=[],
            strings_can_be_null=False,
        ),
    )


def copy_in_table(conn: psycopg.Connection, target: sql.Composable, table: pa.Table) -> None:
    """Append ``table``'s rows to the relation ``target`` (columns named as ``table``'s) by one ``COPY
    FROM STDIN`` in CSV written by Arrow. Nulls go as NULL, empty strings as empty strings. Atomic with
    the caller's transaction."""
    columns = sql.SQL(", ").join(map(sql.Identifier, table.column_names))
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, ENCODING 'UTF8')").format(target, columns)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        pa_csv.write_csv(table, _CopyInSink(copy), write_options=pa_csv.WriteOptions(include_header=False))
