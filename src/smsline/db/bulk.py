"""Statements the service runs for many rows at a time, handed to the driver's ``executemany``.

SQLAlchemy's own executemany looks the statement up in its compiled cache and builds a parameter
dictionary for every row through several layers; on the database thread that was a third of the
time spent recording submit results and receipts. A `Bulk` statement is compiled once per dialect
and set of columns, and each row becomes one tuple, its values passed through the same type
conversions SQLAlchemy would apply.

Only for INSERT and UPDATE statements without RETURNING whose columns have no Python-side
defaults (those are computed by SQLAlchemy's execution, which this bypasses).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.dml import UpdateBase

_MISSING = object()


@dataclass(frozen=True, slots=True)
class _Parameter:
    name: str
    convert: Callable[[Any], Any] | None
    default: Any  # the statement's own value (e.g. a literal in .values()), or _MISSING


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    parameters: tuple[_Parameter, ...]

    def row(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        out = []
        for p in self.parameters:
            value = values.get(p.name, p.default)
            if value is _MISSING:
                raise KeyError(f"no value for the statement's parameter {p.name!r}")
            out.append(p.convert(value) if p.convert is not None and value is not None else value)
        return tuple(out)


class Bulk:
    """``statement`` run with a list of parameter dictionaries, by the driver's executemany."""

    def __init__(self, statement: UpdateBase) -> None:
        self.statement = statement
        self._plans: dict[tuple[str, tuple[str, ...]], _Plan] = {}

    def execute(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        keys = tuple(rows[0])
        plan = self._plans.get((conn.dialect.name, keys))
        if plan is None:
            plan = self._plans[(conn.dialect.name, keys)] = self._plan(conn.dialect, keys)
        conn.exec_driver_sql(plan.sql, [plan.row(values) for values in rows])

    def _plan(self, dialect: Dialect, keys: tuple[str, ...]) -> _Plan:
        compiled = self.statement.compile(dialect=dialect, column_keys=list(keys), for_executemany=True)
        if compiled.effective_returning:
            raise ValueError("a Bulk statement cannot have RETURNING")
        if not compiled.positional or compiled.positiontup is None:
            raise ValueError(f"{dialect.name}: Bulk needs a driver with positional parameters")
        parameters = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
            default = _MISSING if name in keys or bind.required else bind.effective_value
            parameters.append(_Parameter(name, convert, default))
        return _Plan(compiled.string, tuple(parameters))
