"""Writing many rows, and several statements, in one database round trip.

The ingestion hot path writes a usage event, its lines, a ledger transaction, its entries
and the balances they move. Django's ORM builds and prepares every value of every field in
Python and waits for PostgreSQL after each statement, which dominated the cost of a report.
Here rows are plain tuples, a table's rows are inserted by one statement with one array
parameter per column (`INSERT ... SELECT FROM unnest(...)`), and the statements of one step
go to PostgreSQL together, in pipeline mode: one round trip, executed in order, the first
error aborting the rest (and, inside `transaction.atomic()`, the transaction).

Triggers and constraints apply as for any INSERT; errors arrive as Django's database
exceptions (IntegrityError, DataError, ...).
"""

import enum
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from django.db import DatabaseError, connection, models

# Columns sent as text and cast on the server.
_TEXT_CAST_TYPES = ("jsonb",)


# ---------------------------------------------------------------------------- array parameters
#
# Arrays travel as PostgreSQL array literals ('{a,b,NULL}'), built here: psycopg's list
# dumper inspects every element in Python and cost more than the rest of a report. The
# statement casts each parameter to its array type, so PostgreSQL parses the literal.


def _plain(value) -> str:
    # ids, integers, Decimals: no character that needs quoting in an array literal
    # (Decimal's exponent form, 1E-7, is valid numeric input).
    return "NULL" if value is None else str(value)


def _text(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, enum.Enum):  # Django's choices are stored by their value
        value = value.value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _time(value) -> str:
    return "NULL" if value is None else value.isoformat()


def _json(value) -> str:
    if value is None:
        return "NULL"
    return '"{}"' if value == {} else _text(json.dumps(value))


def _encode_array(encode, values) -> str:
    """The array literal of `values`; each distinct value is encoded once (a batch's rows
    repeat the merchant, the timestamps, the prices: str() of a UUID is slow Python)."""
    if encode is _json:  # (dicts cannot be remembered by value)
        return "{" + ",".join(map(encode, values)) + "}"
    memo: dict = {}
    parts = []
    for value in values:
        text = memo.get(value)
        if text is None:
            text = memo[value] = encode(value)
        parts.append(text)
    return "{" + ",".join(parts) + "}"


def _encoder_for(db_type: str):
    if db_type.startswith(("varchar", "text", "char")):
        return _text
    if db_type.startswith("timestamp"):
        return _time
    if db_type == "jsonb":
        return _json
    if db_type.startswith(("uuid", "integer", "smallint", "bigint", "numeric")):
        return _plain
    raise ValueError(f"no array encoding for column type {db_type}")


def array_param(values, db_type: str = "uuid") -> str:
    """`values` as one array parameter for a column of `db_type` (cast it in the SQL: %s::uuid[])."""
    return _encode_array(_encoder_for(db_type), values)


def new_id() -> str:
    """A random (version 4) UUID as text, for rows written here: what str(uuid.uuid4()) gives,
    without building a UUID object (a batch writes thousands of rows)."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


class StalePreparedStatement(DatabaseError):
    """A statement prepared on this connection no longer fits the schema (a migration ran
    since), or the server forgot it (a pooler's DISCARD ALL). The connection's prepared
    statements are dropped (at once outside a transaction, by the rollback inside one):
    retrying the operation prepares them again."""


@dataclass(frozen=True)
class Statement:
    sql: str
    params: Sequence = ()
    # None: prepared once per connection (DATABASE_PREPARED_STATEMENTS) and run under a
    # generic plan. False: planned with its values at every execution, for a statement whose
    # generic plan depends on what the tables held when it was first prepared. On a connection
    # whose prepare_threshold is None (DATABASE_PREPARED_STATEMENTS=false) psycopg prepares
    # nothing, whatever this says (tests/core/test_prepared_statements.py).
    prepare: bool | None = None


_insert_sql_cache: dict = {}


def _insert_plan(model: type[models.Model], attnames: tuple[str, ...], generated: tuple[tuple[str, str], ...]):
    key = (model, attnames, generated)
    plan = _insert_sql_cache.get(key)
    if plan is not None:
        return plan
    fields = {f.attname: f for f in model._meta.concrete_fields}
    quote = connection.ops.quote_name
    columns, arrays, selects, encoders = [], [], [], []
    for index, name in enumerate(attnames):
        field = fields[name]
        db_type = field.db_type(connection)
        columns.append(quote(field.column))
        encoders.append(_encoder_for(db_type))
        if db_type in _TEXT_CAST_TYPES:
            arrays.append("%s::text[]")
            selects.append(f"u.c{index}::{db_type}")
        else:
            # The base type, without its length or scale: an explicit cast to varchar(200)
            # would cut a longer value silently, where the column's own assignment cast
            # refuses it (value too long).
            arrays.append(f"%s::{db_type.split('(')[0]}[]")
            selects.append(f"u.c{index}")
    for name, expression in generated:
        columns.append(quote(fields[name].column))
        selects.append(expression)
    aliases = ", ".join(f"c{i}" for i in range(len(attnames)))
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(columns)}) "  # noqa: S608 (names from models)
        f"SELECT {', '.join(selects)} FROM unnest({', '.join(arrays)}) AS u({aliases})"
    )
    plan = _insert_sql_cache[key] = (sql, encoders)
    return plan


def insert_rows(
    model: type[models.Model], attnames: Sequence[str], rows: Sequence[Sequence], *, generated: dict | None = None
) -> Statement:
    """One INSERT of `rows` (tuples in the order of `attnames`) into `model`'s table.

    Nothing is filled in: ids, timestamps and defaults are the caller's, or computed by the
    server where `generated` says so ({attname: SQL expression}, e.g. {"id": "gen_random_uuid()"}
    for rows whose ids the caller never reads). JSON columns take Python values (dumped here).
    """
    sql, encoders = _insert_plan(model, tuple(attnames), tuple(sorted((generated or {}).items())))
    columns = zip(*rows, strict=True) if rows else [() for _ in encoders]
    return Statement(sql, [_encode_array(encode, column) for encode, column in zip(encoders, columns, strict=True)])


_update_sql_cache: dict = {}


def update_rows(model: type[models.Model], attnames: Sequence[str], rows: Sequence[Sequence]) -> Statement:
    """One UPDATE of `model`'s rows from `rows`: tuples of (primary key, then the values of
    `attnames`), matched on the primary key (`UPDATE ... FROM unnest(...)`; Django's
    bulk_update writes a CASE per field and row, whose size grows with the square of the rows).
    Nothing is filled in: an `updated_at` is the caller's to give."""
    key = (model, tuple(attnames))
    plan = _update_sql_cache.get(key)
    if plan is None:
        fields = {f.attname: f for f in model._meta.concrete_fields}
        quote = connection.ops.quote_name
        pk = model._meta.pk
        names = [pk.attname, *attnames]
        arrays, encoders, sets = [], [], []
        for index, name in enumerate(names):
            field = fields[name]
            db_type = field.db_type(connection)
            encoders.append(_encoder_for(db_type))
            if db_type in _TEXT_CAST_TYPES:
                arrays.append("%s::text[]")
                value = f"u.c{index}::{db_type}"
            else:
                arrays.append(f"%s::{db_type.split('(')[0]}[]")
                value = f"u.c{index}"
            if index:
                sets.append(f"{quote(field.column)} = {value}")
        aliases = ", ".join(f"c{i}" for i in range(len(names)))
        table = quote(model._meta.db_table)
        sql = (
            f"UPDATE {table} AS t SET {', '.join(sets)} "  # noqa: S608 (names from models)
            f"FROM unnest({', '.join(arrays)}) AS u({aliases}) WHERE t.{quote(pk.column)} = u.c0"
        )
        plan = _update_sql_cache[key] = (sql, encoders)
    sql, encoders = plan
    columns = zip(*rows, strict=True) if rows else [() for _ in encoders]
    return Statement(sql, [_encode_array(encode, column) for encode, column in zip(encoders, columns, strict=True)])


def update_objects(objects: Sequence[models.Model], attnames: Sequence[str]) -> None:
    """Write these fields of these model instances (of one model) as they are in memory, in one
    statement (`update_rows`)."""
    if objects:
        rows = [[obj.pk, *(getattr(obj, name) for name in attnames)] for obj in objects]
        run_statements([update_rows(type(objects[0]), attnames, rows)])


def run_statements(statements: Sequence[Statement]) -> list[list[tuple]]:
    """Execute `statements` in order in one round trip; return each one's rows ([] for none).

    Inside `transaction.atomic()` they are part of its transaction; outside, they form one
    implicit transaction that commits at the end of the round trip: all or nothing. An error
    raises Django's exception for it and skips the rest.
    """
    statements = [s for s in statements if s is not None]
    if not statements:
        return []
    for statement in statements:
        # psycopg would refuse a NUL in a text parameter while sending, after the statements
        # before it had gone: refuse it before anything is sent (the parsers refuse it too).
        if any(isinstance(param, str) and "\x00" in param for param in statement.params):
            raise ValueError("a text parameter contains a NUL character, which PostgreSQL cannot store")
    connection.ensure_connection()
    raw = connection.connection
    started = time.monotonic()
    with connection.wrap_database_errors:
        # Server-side binding (psycopg's own Cursor, not Django's client-side one): arrays
        # travel as parameters, whatever the number of rows, and each statement is prepared
        # once per connection (DATABASE_PREPARED_STATEMENTS), not parsed at every request.
        cursors = [psycopg.Cursor(raw) for _ in statements]
        try:
            try:
                with raw.pipeline():
                    for cursor, statement in zip(cursors, statements, strict=True):
                        cursor.execute(statement.sql, statement.params or None, prepare=statement.prepare)
            except (psycopg.errors.FeatureNotSupported, psycopg.errors.InvalidSqlStatementName) as exc:
                if isinstance(exc, psycopg.errors.FeatureNotSupported) and "cached plan" not in str(exc):
                    raise
                if not connection.in_atomic_block:
                    raw.execute("DEALLOCATE ALL")  # (psycopg forgets its prepared names on seeing it)
                raise StalePreparedStatement(str(exc)) from exc
            # (pgresult.nfields, not description: that builds a Column object per column)
            results = [cursor.fetchall() if cursor.pgresult.nfields else [] for cursor in cursors]
        finally:
            for cursor in cursors:
                cursor.close()
    if connection.queries_logged:
        # One entry per round trip, so that CaptureQueriesContext counts round trips.
        connection.queries_log.append(
            {"sql": " ;\n".join(s.sql for s in statements), "time": f"{time.monotonic() - started:.3f}"}
        )
    return results
