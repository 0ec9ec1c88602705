"""The service's hot statements, run through the driver's cursor instead of SQLAlchemy's execution.

SQLAlchemy's execution of a statement (compiled-cache look-up, parameter dictionaries through
several layers, result metadata built anew each time) costs several times what SQLite takes to
run it, on a database thread whose Python competes for the GIL with the event loop. Statements
here are compiled once per dialect (and set of columns); each set of values becomes one tuple
passed through the same type conversions SQLAlchemy would apply, and returned columns get
SQLAlchemy's conversions too. `Bulk` writes many rows (``executemany`` on SQLite; one statement
over arrays of the values on PostgreSQL); `Prepared` runs once and returns rows. Driver errors
come as the driver raises them (not wrapped in SQLAlchemy's exceptions).

Only for statements whose columns have no Python-side defaults (those are computed by
SQLAlchemy's execution, which this bypasses).

`any_of` is the condition "column is one of these values" with all the values in one parameter.
SQLAlchemy's expanding IN writes one placeholder per value, so every execution renders the
statement text anew and every length of list is a different statement (on PostgreSQL, one more
to prepare); here the text is the same for any list, compiled once and prepared once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, String, bindparam
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert, UpdateBase
from sqlalchemy.sql.elements import BindParameter, ClauseElement
from sqlalchemy.sql.type_api import TypeEngine
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import NullType, TypeDecorator


class _Values(TypeDecorator[Iterable[Any]]):
    """A list of values in one parameter: a JSON array on SQLite, an array on PostgreSQL."""

    impl = String
    cache_ok = True

    def __init__(self, item: TypeEngine[Any]) -> None:
        super().__init__()
        self.item = item

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(self.item))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: Iterable[Any] | None, dialect: Dialect) -> Any:
        if value is None:
            raise ValueError("any_of() needs a list of values, not None")
        if dialect.name == "postgresql":
            return list(value)
        return json.dumps(list(value), ensure_ascii=False)


class _AnyOf(ColumnElement[bool]):
    inherit_cache = True
    # Not Boolean: on SQLite SQLAlchemy would compare a boolean condition with 1, and SQLite uses
    # no index for "x IN (...) = 1".
    type = NullType()  # type: ignore[assignment]
    _traverse_internals = [  # noqa: RUF012 (SQLAlchemy's own declaration)
        ("column", InternalTraversal.dp_clauseelement),
        ("values", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: ColumnElement[Any], values: BindParameter[Any]) -> None:
        self.column = column
        self.values = values


def any_of(column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """``column`` is one of the values given, as a list, to the parameter ``name``."""
    return _AnyOf(column, bindparam(name, type_=_Values(column.type)))


@compiles(_AnyOf, "sqlite")
def _any_of_sqlite(element: _AnyOf, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    return f"{column} IN (SELECT value FROM json_each({compiler.process(element.values, **kw)}))"


@compiles(_AnyOf)
def _any_of_array(element: _AnyOf, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{compiler.process(element.column, **kw)} = ANY({compiler.process(element.values, **kw)})"

_MISSING = object()


@dataclass(frozen=True, slots=True)
class _Parameter:
    name: str
    convert: Callable[[Any], Any] | None
    default: Any  # the statement's own value (e.g. a literal in .values()), or _MISSING
    type: TypeEngine[Any]


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    parameters: tuple[_Parameter, ...]
    # Conversions of the returned columns (None: the driver's value as it is).
    results: tuple[Callable[[Any], Any] | None, ...] = ()

    def row(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        out = []
        for p in self.parameters:
            value = values.get(p.name, p.default)
            if value is _MISSING:
                raise KeyError(f"no value for the statement's parameter {p.name!r}")
            out.append(p.convert(value) if p.convert is not None and value is not None else value)
        return tuple(out)

    def converted(self, rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        if not any(self.results):
            return [tuple(r) for r in rows]
        converts = self.results
        return [
            tuple(
                value if convert is None or value is None else convert(value)
                for value, convert in zip(r, converts, strict=True)
            )
            for r in rows
        ]


def _compile(
    statement: ClauseElement, dialect: Dialect, keys: tuple[str, ...] | None, *, many: bool
) -> _Plan:
    kw: dict[str, Any] = {"column_keys": list(keys)} if keys is not None else {}
    compiled = statement.compile(dialect=dialect, for_executemany=many, **kw)
    assert isinstance(compiled, SQLCompiler)
    if not compiled.positional or compiled.positiontup is None:
        raise ValueError(f"{dialect.name}: needs a driver with positional parameters")
    if any(bind.expanding for bind in compiled.binds.values()):
        raise ValueError("expanding IN parameters are rendered per execution: use any_of()")
    parameters = []
    for name in compiled.positiontup:
        bind = compiled.binds[name]
        convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
        default = _MISSING if (keys is not None and name in keys) or bind.required else bind.effective_value
        parameters.append(_Parameter(name, convert, default, bind.type))
    results = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None)
        for column in compiled._result_columns
    )
    return _Plan(compiled.string, tuple(parameters), results)


class Bulk:
    """``statement`` run with a list of parameter dictionaries: by the driver's executemany on
    SQLite; on PostgreSQL as one statement over arrays of the values (`_over_arrays`), which the
    server runs once instead of once per row."""

    def __init__(self, statement: UpdateBase) -> None:
        self.statement = statement
        self._plans: dict[tuple[str, tuple[str, ...]], tuple[_Plan, str | None]] = {}

    def execute(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        keys = tuple(rows[0])
        planned = self._plans.get((conn.dialect.name, keys))
        if planned is None:
            plan = _compile(self.statement, conn.dialect, keys, many=True)
            if plan.results:
                raise ValueError("a Bulk statement cannot have RETURNING")
            postgres = conn.dialect.name == "postgresql"
            arrays = _over_arrays(self.statement, conn.dialect, plan) if postgres else None
            planned = self._plans[(conn.dialect.name, keys)] = (plan, arrays)
        plan, arrays = planned
        values = [plan.row(v) for v in rows]
        cursor = conn.connection.cursor()
        try:
            if arrays is not None and len(values) > 1:
                cursor.execute(arrays, tuple(list(column) for column in zip(*values, strict=True)))
            else:
                cursor.executemany(plan.sql, values)
        finally:
            cursor.close()


# A PostgreSQL placeholder as SQLAlchemy's asyncpg dialect writes it: $n, with the cast it adds.
_PLACEHOLDER = re.compile(r"\$(\d+)(?:::(?:TIMESTAMP WITH(?:OUT)? TIME ZONE|[A-Z]+))?(?![\w(\[])")


def _over_arrays(statement: UpdateBase, dialect: Dialect, plan: _Plan) -> str | None:
    """The statement rewritten to take every parameter as an array of the rows' values, read
    with unnest: ``INSERT ... SELECT ... FROM unnest(...)``, ``UPDATE ... FROM unnest(...) WHERE``.
    None when the statement is not of a shape rewritten here (it then runs by executemany)."""
    casts = [
        dialect.type_compiler_instance.process(parameter.type._unwrapped_dialect_impl(dialect))
        for parameter in plan.parameters
    ]
    count = len(casts)
    found = [int(m.group(1)) for m in _PLACEHOLDER.finditer(plan.sql)]
    if sorted(found) != list(range(1, count + 1)):
        return None
    body = _PLACEHOLDER.sub(lambda m: f"b.p{m.group(1)}", plan.sql)
    source = (
        "unnest(" + ", ".join(f"${i}::{cast}[]" for i, cast in enumerate(casts, start=1)) + ") AS b("
        + ", ".join(f"p{i}" for i in range(1, count + 1)) + ")"
    )
    if isinstance(statement, Insert):
        head, values_kw, rest = body.partition(" VALUES (")
        if not values_kw or not rest.endswith(")") or "(" in rest[:-1]:
            return None
        return f"{head} SELECT {rest[:-1]} FROM {source}"
    head, where_kw, rest = body.partition(" WHERE ")
    if not where_kw or not head.startswith("UPDATE ") or " RETURNING " in rest:
        return None
    return f"{head} FROM {source} WHERE {rest}"


class Prepared:
    """``statement`` run once with a dictionary of values, through the driver like `Bulk`: compiled
    once per dialect (and set of inserted columns), its parameters converted as SQLAlchemy would,
    and the rows it returns as tuples with SQLAlchemy's conversions of their columns. SQLAlchemy's
    own execution of a statement costs several times what SQLite takes to run it.

    For statements without expanding IN parameters (use `any_of`) and whose columns have no
    Python-side defaults."""

    def __init__(self, statement: Select[Any] | UpdateBase) -> None:
        self.statement = statement
        self._inserts = isinstance(statement, Insert)
        self._plans: dict[tuple[str, tuple[str, ...] | None], _Plan] = {}

    def rows(self, conn: Connection, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        plan = self._plan(conn, values)
        cursor = conn.connection.cursor()
        try:
            cursor.execute(plan.sql, plan.row(values))
            return plan.converted(cursor.fetchall()) if plan.results else []
        finally:
            cursor.close()

    def each(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """The statement (an INSERT ... RETURNING) run for each of ``rows``; all the rows returned.
        On SQLite one execution per row costs no round trip; on PostgreSQL SQLAlchemy's
        "insertmanyvalues" sends them all in one statement (give RETURNING
        ``sort_by_parameter_order`` when the order of the results matters)."""
        if not rows:
            return []
        if conn.dialect.name == "sqlite":
            return [returned for values in rows for returned in self.rows(conn, values)]
        return [tuple(r) for r in conn.execute(self.statement, list(rows))]

    def run(self, conn: Connection, values: Mapping[str, Any]) -> int:
        """Run a statement that returns no rows; the number of rows it changed."""
        plan = self._plan(conn, values)
        cursor = conn.connection.cursor()
        try:
            cursor.execute(plan.sql, plan.row(values))
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def _plan(self, conn: Connection, values: Mapping[str, Any]) -> _Plan:
        keys = tuple(values) if self._inserts else None
        plan = self._plans.get((conn.dialect.name, keys))
        if plan is None:
            plan = self._plans[(conn.dialect.name, keys)] = _compile(
                self.statement, conn.dialect, keys, many=False
            )
        return plan
