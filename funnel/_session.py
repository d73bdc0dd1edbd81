"""PostgreSQL settings for one block of statements, shared by the funnel's services and
selectors."""

from __future__ import annotations

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
