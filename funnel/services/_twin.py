"""A twin of a live funnel table (PostgreSQL): a new table built under another name, then
given the live table's name in one transaction, so that readers see the old rows or the
new ones, never a mix. A rebuild into empty tables makes two, the milestones and the paid
periods: both in its own transaction (``_rebuild``), or the paid periods on a second
connection meanwhile (``_beside``).

What makes a new table the live one's twin is read from the catalog here: its columns
(types, collations, NOT NULL, defaults), checks, keys and indexes, storage parameters,
owner and grants. Not triggers, policies, publications or per-column statistics targets,
which this project does not define."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from funnel.services._write import create_from_raw


@dataclass(frozen=True)
class KeyOrIndex:
    """A table's key (primary or unique constraint) or other index, as the catalog has it:
    enough to drop it and to make it again, on that table or on a twin of it."""

    name: str
    is_key: bool
    unique: bool
    # A key's definition ("PRIMARY KEY (...)"); an index's from its method on ("USING
    # btree (...) [INCLUDE (...)] [WHERE ...]": pg_get_indexdef names the table
    # qualified, and ours have no " USING ").
    body: str

    def create(self, table: str, name: str | None = None) -> str:
        name = name or self.name
        if self.is_key:
            return f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {self.body}'
        return f'CREATE {"UNIQUE " if self.unique else ""}INDEX "{name}" ON {table}{self.body}'

    def drop(self, table: str) -> str:
        if self.is_key:
            return f'ALTER TABLE {table} DROP CONSTRAINT "{self.name}"'
        return f'DROP INDEX "{self.name}"'


def keys_and_indexes(cursor: Any, table: str) -> list[KeyOrIndex]:
    """The keys, then the other indexes, of ``table``."""
    cursor.execute(
        """
        SELECT c.conname, TRUE, TRUE, pg_get_constraintdef(c.oid)
        FROM pg_constraint c
        WHERE c.conrelid = %(table)s::regclass AND c.contype IN ('p', 'u')
        UNION ALL
        SELECT i.relname, FALSE, x.indisunique,
            substring(pg_get_indexdef(x.indexrelid) FROM ' USING .*$')
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
        WHERE x.indrelid = %(table)s::regclass
            AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
        ORDER BY 2 DESC, 1
        """,
        {"table": table},
    )
    return [KeyOrIndex(*row) for row in cursor.fetchall()]


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as declared: "timestamp with time zone", "character varying(32)"
    collation: str | None  # quoted, when not the type's own
    not_null: bool
    default: str | None

    def cast(self, alias: str) -> str:
        """This column of the row ``alias``, as this column's type and collation."""
        collate = f" COLLATE {self.collation}" if self.collation else ""
        return f'CAST({alias}."{self.name}" AS {self.type}){collate} AS "{self.name}"'


def twin_name(table: str) -> str:
    """The name a new table of ``table`` is built under."""
    return f"{table}_next"


def _shape(cursor: Any, table: str) -> tuple[list[Column], list[tuple[str, str]], str]:
    """The columns, checks and storage parameters of ``table``: what a table made by
    ``CREATE TABLE AS`` must be given to be its twin."""
    cursor.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod),
            CASE WHEN a.attcollation <> t.typcollation THEN quote_ident(co.collname) END,
            a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_collation co ON co.oid = a.attcollation
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = %(table)s::regclass AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        {"table": table},
    )
    columns = [Column(*row) for row in cursor.fetchall()]
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %(table)s::regclass AND contype = 'c' ORDER BY 1",
        {"table": table},
    )
    checks = [(name, body) for name, body in cursor.fetchall()]
    cursor.execute(
        "SELECT array_to_string(reloptions, ', ') FROM pg_class WHERE oid = %(table)s::regclass",
        {"table": table},
    )
    return columns, checks, cursor.fetchone()[0] or ""


@dataclass(frozen=True)
class Definition:
    """A live table's definition, as far as its twin must repeat it."""

    table: str
    columns: list[Column]
    checks: list[tuple[str, str]]  # (name, "CHECK (...)")
    options: str  # "fillfactor=85, ..."
    keys_and_indexes: list[KeyOrIndex]
    # The live table's owner (quoted) when it is not the current user (a member of the
    # owner's role), who will own the twin; else None.
    owner: str | None
    grants: list[str]

    @property
    def twin(self) -> str:
        return twin_name(self.table)

    @classmethod
    def read(cls, cursor: Any, table: str) -> Definition:
        columns, checks, options = _shape(cursor, table)
        cursor.execute(
            """
            SELECT
                CASE WHEN c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
                     THEN quote_ident(pg_get_userbyid(c.relowner)) END,
                ARRAY(
                    SELECT format('GRANT %%s ON %%I TO %%s%%s', a.privilege_type, c.relname,
                        CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                             ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                        CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
                    FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner
                )
            FROM pg_class c WHERE c.oid = %(table)s::regclass
            """,
            {"table": table},
        )
        owner, grants = cursor.fetchone()
        return cls(
            table=table,
            columns=columns,
            checks=checks,
            options=options,
            keys_and_indexes=keys_and_indexes(cursor, table),
            owner=owner,
            grants=list(grants),
        )

    def build_twin(self, cursor: Any, select: str, params: dict[str, Any]) -> int:
        """Make the twin (``twin_name``, replacing one left over) of the rows of ``select``
        (a recomputation of everyone from the raw tables, with a column of each live
        column's name), without keys or indexes; returns its rows.

        ``CREATE TABLE AS``, not ``LIKE`` and an ``INSERT``: PostgreSQL runs an ``INSERT
        ... SELECT`` in one process, a ``CREATE TABLE AS`` in parallel, and writes its
        rows in bulk (the milestones' copy from a temporary table took 0.9 s at a million
        rows). The rows are cast to the live columns' types, in their order, and written
        with the live storage parameters (a fillfactor must hold for them); one ``ALTER
        TABLE`` (one scan of the rows) adds the NOT NULLs, defaults and checks. Then the
        twin is compared with the live table: a rebuild must not put in place a table the
        product's migrations did not make, whatever a later migration adds to the live
        one."""
        cursor.execute(f"DROP TABLE IF EXISTS {self.twin}")
        cast = ", ".join(c.cast("s") for c in self.columns)
        options = f" WITH ({self.options})" if self.options else ""
        rows = create_from_raw(
            cursor,
            f"CREATE TABLE {self.twin}{options} AS SELECT {cast} FROM ({select}) s",
            params,
            everyone=True,
        )
        if complete := self.complete():
            cursor.execute(complete)
        for what, twin, live in zip(
            ("columns", "checks", "options"),
            _shape(cursor, self.twin),
            (self.columns, self.checks, self.options),
            strict=True,
        ):
            if twin != live:
                raise RuntimeError(
                    f"rebuild_funnel cannot replace {self.table}: "
                    f"{self.twin}'s {what} are not {self.table}'s"
                )
        return rows

    def complete(self) -> str | None:
        """The ``ALTER TABLE`` that gives the twin, as ``CREATE TABLE AS`` made it, the
        live NOT NULLs, defaults and checks (None if there are none)."""
        actions = [f'ALTER COLUMN "{c.name}" SET NOT NULL' for c in self.columns if c.not_null]
        actions += [
            f'ALTER COLUMN "{c.name}" SET DEFAULT {c.default}'
            for c in self.columns
            if c.default is not None
        ]
        actions += [f'ADD CONSTRAINT "{name}" {body}' for name, body in self.checks]
        return f"ALTER TABLE {self.twin} {', '.join(actions)}" if actions else None

    def take_place(self, cursor: Any, renamed: dict[str, str] | None = None) -> None:
        """In the caller's transaction: drop the live table and give the twin its name,
        its owner and grants; and its keys and indexes made on the twin under other
        names (``renamed``: their names there by their live names) theirs."""
        cursor.execute(f"DROP TABLE {self.table}")
        cursor.execute(f"ALTER TABLE {self.twin} RENAME TO {self.table}")
        keys = {found.name: found.is_key for found in self.keys_and_indexes}
        for live, new in (renamed or {}).items():
            # Renaming a key renames the index behind it.
            if keys[live]:
                cursor.execute(f'ALTER TABLE {self.table} RENAME CONSTRAINT "{new}" TO "{live}"')
            else:
                cursor.execute(f'ALTER INDEX "{new}" RENAME TO "{live}"')
        if self.owner:
            cursor.execute(f"ALTER TABLE {self.table} OWNER TO {self.owner}")
        for grant in self.grants:
            cursor.execute(grant)
