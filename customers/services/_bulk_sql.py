"""Bulk INSERT and UPDATE of plain rows, fast on PostgreSQL.

A WeCom sync of a million relationships writes millions of rows. Django's
``bulk_create`` builds a model instance and prepares every value through the field per
row, and ``bulk_update`` compiles a ``CASE WHEN id = ...`` per field that the server
evaluates quadratically; together they were most of a sync's time. On PostgreSQL these
helpers instead:

* INSERT with ``COPY ... FROM STDIN`` (new ids reserved from the table's sequence first,
  so they are known without ``RETURNING``), or through a temporary staging table and
  ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` when conflicts must be ignored;
* UPDATE with one ``UPDATE ... FROM (VALUES ...)`` per thousand rows.

On any other database (the embedded SQLite) they fall back to ``bulk_create`` /
``bulk_update``. Rows are dicts of attnames (``customer_id``), every row the same keys.
They run inside the caller's transaction.
"""

from __future__ import annotations

import io
import json
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, time
from typing import Any, cast

from django.db import connections, models, router, transaction
from django.utils import timezone


def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    return cast("models.Field[Any, Any]", model._meta.get_field(name))


def _defaults(model: type[models.Model], given: Iterable[str]) -> dict[str, Any]:
    """Every concrete column not in ``given``, with what ``Model.save`` would store
    (``auto_now`` included). Computed once per batch: the batch shares one timestamp."""
    now = timezone.now()
    given = set(given)
    defaults: dict[str, Any] = {}
    for f in model._meta.concrete_fields:
        if f.primary_key or f.attname in given:
            continue
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            defaults[f.attname] = now
        else:
            defaults[f.attname] = f.get_default()
    return defaults


_PLAIN_TYPES = frozenset(
    {
        "AutoField",
        "BigAutoField",
        "BigIntegerField",
        "BooleanField",
        "CharField",
        "DateField",
        "DateTimeField",
        "DecimalField",
        "EmailField",
        "ForeignKey",
        "IntegerField",
        "OneToOneField",
        "PositiveBigIntegerField",
        "PositiveIntegerField",
        "PositiveSmallIntegerField",
        "SlugField",
        "SmallIntegerField",
        "TextField",
        "URLField",
    }
)

# COPY's text format: backslash, tab, newline and carriage return are escaped; \N is NULL.
COPY_NULL = r"\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")


def copy_text(value: str) -> str:
    """``value`` as a field of COPY's text format."""
    # str.translate walks every character (slowly, on CJK names); most values need none.
    return value.translate(_COPY_ESCAPES) if _COPY_SPECIAL.search(value) else value


def _copy_converter(field: models.Field[Any, Any], connection: Any) -> Callable[[Any], str]:
    """How a Python value of ``field`` is written in COPY's text format."""
    kind = field.get_internal_type()

    def text(value: Any) -> str:
        if value is None:
            return COPY_NULL
        if value is True:
            return "t"
        if value is False:
            return "f"
        if isinstance(value, datetime | date | time):
            return value.isoformat()
        return copy_text(str(value))

    if kind in _PLAIN_TYPES:
        return text
    if kind == "JSONField":
        encoder = getattr(field, "encoder", None)
        return lambda value: text(
            None if value is None else json.dumps(value, cls=encoder, ensure_ascii=False)
        )
    return lambda value: text(field.get_db_prep_save(value, connection))


def _copy(cursor: Any, table: str, columns: Sequence[str], lines: Iterable[str]) -> None:
    cursor.copy_expert(
        f"COPY {table} ({', '.join(columns)}) FROM STDIN", io.StringIO("".join(lines))
    )


def insert_rows(
    model: type[models.Model],
    *,
    rows: Sequence[Mapping[str, Any]],
    ignore_conflicts: bool = False,
    returning: bool = True,
) -> list[int]:
    """INSERT new rows; returns their ids in input order. With ``ignore_conflicts`` the
    ids are those of the rows actually inserted, in no particular order; without
    ``returning`` (a table whose key is composite) none."""
    if not rows:
        return []
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        objs = [model(**row) for row in rows]
        model._default_manager.bulk_create(objs, batch_size=1000, ignore_conflicts=ignore_conflicts)
        return [obj.pk for obj in objs if obj.pk is not None] if returning else []

    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    given = list(rows[0])
    defaults = _defaults(model, given)
    fields = [_field(model, name) for name in (*given, *defaults)]
    convert = [_copy_converter(f, connection) for f in fields[: len(given)]]
    fixed = "".join(
        "\t" + conv(defaults[name])
        for conv, name in zip(
            [_copy_converter(f, connection) for f in fields[len(given) :]], defaults, strict=True
        )
    )
    body = [
        "\t".join(conv(row[name]) for conv, name in zip(convert, given, strict=True)) + fixed
        for row in rows
    ]
    columns = [qn(f.column) for f in fields]
    pk = qn(model._meta.pk.column) if returning else ""
    # The raw psycopg2 cursor skips Django's wrapper: map its errors to django.db's
    # (IntegrityError...) ourselves, so callers see one exception hierarchy.
    with transaction.atomic(using=connection.alias), connection.cursor() as wrapper:
        cursor = wrapper.cursor
        with connection.wrap_database_errors:
            if not ignore_conflicts:
                ids: list[int] = []
                if returning:
                    cursor.execute(
                        "SELECT nextval(pg_get_serial_sequence(%s, %s)) "
                        "FROM generate_series(1, %s)",
                        [model._meta.db_table, model._meta.pk.column, len(rows)],
                    )
                    ids = [r[0] for r in cursor.fetchall()]
                    body = [f"{pk_value}\t{line}" for pk_value, line in zip(ids, body, strict=True)]
                    columns = [pk, *columns]
                _copy(cursor, table, columns, (line + "\n" for line in body))
                return ids
            # Conflicts to skip: COPY cannot, so stage the rows and INSERT ... SELECT.
            stage = qn(f"_stage_{model._meta.db_table}_{zlib.crc32(''.join(columns).encode())}")
            column_list = ", ".join(columns)
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
                f"SELECT {column_list} FROM {table} WITH NO DATA"
            )
            cursor.execute(f"TRUNCATE {stage}")
            _copy(cursor, stage, columns, (line + "\n" for line in body))
            cursor.execute(
                f"INSERT INTO {table} ({column_list}) SELECT {column_list} FROM {stage} "
                f"ON CONFLICT DO NOTHING" + (f" RETURNING {pk}" if returning else "")
            )
            return [r[0] for r in cursor.fetchall()] if returning else []


def update_rows(
    model: type[models.Model], *, rows: Sequence[Mapping[str, Any]], fields: Sequence[str]
) -> None:
    """Write ``fields`` of each row (a dict with ``id``)."""
    if not rows:
        return
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        # bulk_update writes every listed field of every object, so each carries the
        # stored value of the fields it did not change.
        objs = [model(pk=row["id"], **{f: row[f] for f in fields}) for row in rows]
        model._default_manager.bulk_update(objs, list(fields), batch_size=1000)
        return
    from psycopg2.extras import execute_values

    qn = connection.ops.quote_name
    columns = [_field(model, name) for name in fields]
    assignments = ", ".join(f"{qn(c.column)} = v.{qn(c.column)}" for c in columns)
    names = ", ".join(qn(c.column) for c in columns)
    template = "(%s::bigint, " + ", ".join(f"%s::{c.db_type(connection)}" for c in columns) + ")"
    sql = (
        f"UPDATE {qn(model._meta.db_table)} AS t SET {assignments} "
        f"FROM (VALUES %s) AS v(id, {names}) WHERE t.id = v.id"
    )
    values = [
        (
            row["id"],
            *(
                c.get_db_prep_save(row[name], connection)
                for c, name in zip(columns, fields, strict=True)
            ),
        )
        for row in rows
    ]
    with connection.cursor() as cursor, connection.wrap_database_errors:
        execute_values(cursor.cursor, sql, values, template=template, page_size=1000)
