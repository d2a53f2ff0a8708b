"""Where a database differs from the schema (`controller.store.tables`), one readable line per
difference: the comparison behind `dagloop migrate --check` and `tests/store/test_schema.py`.

Alembic's `compare_metadata` finds missing and unexpected tables, columns, indexes, unique
constraints and foreign keys, and changed types, nullability and server defaults. SQLAlchemy's
inspector then checks what Alembic does not: the predicates of partial indexes and, on SQLite
(whose inline `REFERENCES … ON DELETE` SQLAlchemy does not reflect), the foreign keys' ON DELETE
through `PRAGMA foreign_key_list`. The schema version (`alembic_version`, `meta`) is reported
too, so an old database says which `dagloop migrate` it needs.

`describe` turns one Alembic diff into a `Difference` and is pure; `differences` does the I/O.
Called by `controller.store.migrate.check`; imports SQLAlchemy and Alembic (never the runner's
path).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, ForeignKeyConstraint, Identity, Index, MetaData, inspect, text

from controller.store.schema import HEAD_REVISION, SCHEMA_VERSION
from controller.store.tables import METADATA


@dataclass(frozen=True)
class Difference:
    """One way the database differs from the schema. `kind` is stable for scripts
    (`missing_index`, `column_type`, `schema_version`, …); `text` is the line people read."""

    kind: str
    table: str
    name: str
    text: str

    def __str__(self) -> str:
        return self.text


def differences(connection: Connection, metadata: MetaData = METADATA) -> list[Difference]:
    """Every difference between the database of `connection` and `metadata`; [] when equal."""
    out = _version_differences(connection)
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    diffs = compare_metadata(context, metadata)
    if connection.dialect.name == "sqlite":
        diffs = _without_sqlite_reflection_gaps(diffs, metadata)
    for diff in diffs:
        for op in diff if isinstance(diff, list) else [diff]:
            out.append(describe(op))
    out += _index_predicate_differences(connection, metadata)
    if connection.dialect.name == "sqlite":
        out += _sqlite_on_delete_differences(connection, metadata)
    return out


def describe(op: tuple[Any, ...]) -> Difference:
    """One Alembic diff operation as a `Difference` (pure). "missing" is in the models but not
    in the database; "unexpected" is in the database but not in the models."""
    kind = op[0]
    if kind in ("add_table", "remove_table"):
        what = "missing" if kind == "add_table" else "unexpected"
        return Difference(f"{what}_table", op[1].name, op[1].name, f"{what} table {op[1].name}")
    if kind in ("add_column", "remove_column"):
        what = "missing" if kind == "add_column" else "unexpected"
        table, column = op[2], op[3].name
        return Difference(f"{what}_column", table, column, f"{what} column {column} on {table}")
    if kind in ("add_index", "remove_index"):
        what = "missing" if kind == "add_index" else "unexpected"
        index: Index = op[1]
        table = index.table.name if index.table is not None else ""
        label = "unique index" if index.unique else "index"
        return Difference(
            f"{what}_index", table, str(index.name), f"{what} {label} {index.name} on {table}"
        )
    if kind in ("add_constraint", "remove_constraint"):
        what = "missing" if kind == "add_constraint" else "unexpected"
        constraint = op[1]
        columns = ", ".join(c.name for c in constraint.columns)
        table = constraint.table.name
        return Difference(
            f"{what}_unique", table, columns, f"{what} unique constraint ({columns}) on {table}"
        )
    if kind in ("add_fk", "remove_fk"):
        what = "missing" if kind == "add_fk" else "unexpected"
        fk: ForeignKeyConstraint = op[1]
        table = fk.table.name
        return Difference(
            f"{what}_foreign_key", table, fk_text(fk), f"{what} foreign key {fk_text(fk)}"
        )
    if kind in ("modify_type", "modify_nullable", "modify_default"):
        return _describe_modify(op)
    return Difference("other", "", "", " ".join(str(part) for part in op))


def fk_text(fk: ForeignKeyConstraint) -> str:
    """`steps(run) -> runs(id) ON DELETE CASCADE`."""
    source = ", ".join(fk.column_keys)
    target = ", ".join(e.target_fullname.split(".")[-1] for e in fk.elements)
    on_delete = f" ON DELETE {fk.ondelete.upper()}" if fk.ondelete else ""
    return f"{fk.table.name}({source}) -> {fk.referred_table.name}({target}){on_delete}"


def _describe_modify(op: tuple[Any, ...]) -> Difference:
    kind, _schema, table, column, _existing, found, wanted = op
    where = f"{table}.{column}"
    if kind == "modify_type":
        return Difference(
            "column_type", table, column, f"column {where} is {found}, expected {wanted}"
        )
    if kind == "modify_nullable":
        state = {True: "nullable", False: "NOT NULL"}
        text_ = f"column {where} is {state[found]}, expected {state[wanted]}"
        return Difference("column_nullable", table, column, text_)
    return Difference(
        "column_default",
        table,
        column,
        f"column {where} default is {_default_text(found)}, expected {_default_text(wanted)}",
    )


def _default_text(default: Any) -> str:
    if default is None or default is False:
        return "none"
    arg = getattr(default, "arg", default)
    return str(getattr(arg, "text", arg))


def _version_differences(connection: Connection) -> list[Difference]:
    names = set(inspect(connection).get_table_names())
    revision = version = None
    if "alembic_version" in names:
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if "meta" in names:
        version = connection.execute(
            text("SELECT value FROM meta WHERE key = 'schema_version'")
        ).scalar()
    if revision == HEAD_REVISION and version == str(SCHEMA_VERSION):
        return []
    found = f"schema version {version or 'none'} (revision {revision or 'none'})"
    return [
        Difference(
            "schema_version",
            "",
            str(version or ""),
            f"{found}, expected {SCHEMA_VERSION} (revision {HEAD_REVISION}): run `dagloop migrate`",
        )
    ]


def _without_sqlite_reflection_gaps(diffs: list[Any], metadata: MetaData) -> list[Any]:
    """Alembic's diffs less what SQLite cannot express or SQLAlchemy cannot read back there:
    - nullability of a single-column non-INTEGER primary key: SQLite lets such a key hold NULL
      (a legacy quirk it keeps for compatibility); the models say NOT NULL, which is what
      PostgreSQL enforces, and dagloop never writes NULL there;
    - an identity default on a row id: on SQLite `INTEGER PRIMARY KEY` is the rowid;
    - a foreign key "removed and added" only because SQLAlchemy does not reflect an inline
      `REFERENCES … ON DELETE` on SQLite (`_sqlite_on_delete_differences` checks it instead).
    """
    kept: list[Any] = []
    fk_pairs = _fk_signatures(diffs)
    for diff in diffs:
        if isinstance(diff, list):
            ops = [op for op in diff if not _sqlite_gap(op, metadata)]
            if ops:
                kept.append(ops)
        elif diff[0] in ("add_fk", "remove_fk") and _fk_signature(diff[1]) in fk_pairs:
            continue
        else:
            kept.append(diff)
    return kept


def _sqlite_gap(op: tuple[Any, ...], metadata: MetaData) -> bool:
    table, column = op[2], op[3]
    declared = metadata.tables[table].columns[column]
    if op[0] == "modify_nullable":
        return declared.primary_key and op[5] is True and op[6] is False
    return op[0] == "modify_default" and isinstance(op[6], Identity)


def _fk_signature(fk: ForeignKeyConstraint) -> tuple[str, tuple[str, ...], str]:
    return (fk.table.name, tuple(fk.column_keys), fk.referred_table.name)


def _fk_signatures(diffs: list[Any]) -> set[tuple[str, tuple[str, ...], str]]:
    """Signatures of foreign keys that Alembic reports both removed and added."""
    added = {_fk_signature(d[1]) for d in diffs if not isinstance(d, list) and d[0] == "add_fk"}
    removed = {
        _fk_signature(d[1]) for d in diffs if not isinstance(d, list) and d[0] == "remove_fk"
    }
    return added & removed


def _predicate(where: Any) -> str:
    """A partial index's WHERE clause, normalised (case, spaces, outer parentheses); '' for
    none. (A clause's truth value is undefined in SQLAlchemy: test it against None.)"""
    if where is None:
        return ""
    text_ = re.sub(r"\s+", " ", str(where)).strip().lower()
    while text_.startswith("(") and text_.endswith(")"):
        text_ = text_[1:-1].strip()
    return text_


def _index_predicate_differences(connection: Connection, metadata: MetaData) -> list[Difference]:
    dialect = connection.dialect.name
    inspector = inspect(connection)
    existing = set(inspector.get_table_names())
    out: list[Difference] = []
    for table in metadata.sorted_tables:
        if table.name not in existing:
            continue
        found = {
            i["name"]: _predicate(i.get("dialect_options", {}).get(f"{dialect}_where"))
            for i in inspector.get_indexes(table.name)
        }
        for index in table.indexes:
            if index.name not in found:
                continue  # reported missing by Alembic
            wanted = _predicate(index.dialect_options[dialect].get("where"))
            if found[index.name] != wanted:
                out.append(
                    Difference(
                        "index_predicate",
                        table.name,
                        str(index.name),
                        f"index {index.name} on {table.name} has WHERE "
                        f"{found[index.name] or 'none'}, expected {wanted or 'none'}",
                    )
                )
    return out


def _sqlite_on_delete_differences(connection: Connection, metadata: MetaData) -> list[Difference]:
    existing = set(inspect(connection).get_table_names())
    out: list[Difference] = []
    for table in metadata.sorted_tables:
        if table.name not in existing:
            continue
        rows = connection.exec_driver_sql(f"PRAGMA foreign_key_list('{table.name}')").fetchall()
        found = {(r[2], r[3]): r[6].upper() for r in rows}  # (table, from) -> on_delete
        for fk in table.foreign_key_constraints:
            key = (fk.referred_table.name, fk.column_keys[0])
            wanted = (fk.ondelete or "NO ACTION").upper()
            if key in found and found[key] != wanted:
                out.append(
                    Difference(
                        "foreign_key_on_delete",
                        table.name,
                        fk_text(fk),
                        f"foreign key {fk_text(fk)} has ON DELETE {found[key]}",
                    )
                )
    return out
