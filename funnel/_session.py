"""PostgreSQL session state the funnel uses: settings for one block of statements (shared
by the services and selectors), and prepared statements."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection


@contextmanager
def local_settings(cursor: Any, values: dict[str, str]) -> Iterator[None]:
    """These settings for the block, on PostgreSQL (``SET LOCAL``: the transaction's), and
    the previous ones back after it, so that a caller's transaction around the block
    keeps its own. Restored on success only: a failed transaction (or savepoint) rolls
    SET LOCAL back itself. The block must be inside a transaction (an atomic block):
    outside one, each statement is a transaction of its own and the settings end with the
    statement that makes them."""
    if connection.vendor != "postgresql":
        yield
        return
    names = list(values)
    cursor.execute(
        "SELECT " + ", ".join("current_setting(%s), set_config(%s, %s, true)" for _ in names),
        [x for name in names for x in (name, name, values[name])],
    )
    row = cursor.fetchone()
    previous = {name: row[2 * i] for i, name in enumerate(names)}
    yield
    cursor.execute(
        "SELECT " + ", ".join("set_config(%s, %s, true)" for _ in names),
        [x for name in names for x in (name, previous[name])],
    )


def prepared_statement(cursor: Any, prefix: str, sql: str, parameters: dict[str, str]) -> str:
    """The name of this session's prepared statement of ``sql`` (its ``%(name)s``
    parameters in the order and with the types of ``parameters``), prepared now if the
    session has none yet. The name ends with a digest of the text, so that other
    settings (another retention period is another text) get their own statement. Looked
    up in ``pg_prepared_statements`` in the caller's transaction rather than remembered:
    a pooler may hand the transaction another server session."""
    text = sql
    for number, parameter in enumerate(parameters, start=1):
        text = text.replace(f"%({parameter})s", f"${number}")
    text = text.replace("%%", "%")
    name = f"{prefix}_{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    cursor.execute("SELECT 1 FROM pg_prepared_statements WHERE name = %s", [name])
    if cursor.fetchone() is None:
        cursor.execute(f"PREPARE {name} ({', '.join(parameters.values())}) AS {text}")
    return name
