"""The service's hot statements, run through the driver's cursor instead of SQLAlchemy's execution.

SQLAlchemy's execution of a statement (compiled-cache look-up, parameter dictionaries through
several layers, result metadata built anew each time) costs several times what SQLite takes to
run it, on a database thread whose Python competes for the GIL with the event loop. Statements
here are compiled once per dialect (and set of columns); each set of values becomes one tuple
passed through the same type conversions SQLAlchemy would apply, and returned columns get
SQLAlchemy's conversions too. `Bulk` writes many rows in one statement (over a JSON array of
the rows on SQLite, over arrays of the values on PostgreSQL); `Prepared` runs once and returns
rows (on SQLite, when the statement asks for it, packed into one JSON value). Driver errors
come as the driver raises them (not wrapped in SQLAlchemy's exceptions).

Why one statement, and one packed row, on SQLite: Python's sqlite3 lets go of the GIL for every
step of a statement, that is once per row written by ``executemany`` and once per row read. The
database thread then waits to take the GIL back from the event loop, up to its switch interval
(5 ms) each time when the loop is busy, which is exactly when the service is sending fastest.
One statement over a JSON array is one step however many rows it writes, and a select packed
with ``json_group_array`` is one step however many rows it returns.

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

from sqlalchemy import Select, String, bindparam, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert, UpdateBase
from sqlalchemy.sql.elements import BindParameter, ClauseElement
from sqlalchemy.sql.type_api import TypeEngine
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import Float, LargeBinary, NullType, Numeric, TypeDecorator


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
    packed: bool = False  # the rows come as one JSON array of arrays

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
    """``statement`` run with a list of parameter dictionaries, as one statement over all the rows:
    on SQLite over a JSON array of them (`_over_json`), on PostgreSQL over arrays of the values
    (`_over_arrays`). Statements of another shape, and values JSON cannot carry (bytes, texts
    with a NUL character, non-finite floats), run by the driver's executemany.

    An UPDATE over many rows sets each target row once: rows given twice for one target row
    must be merged by the caller (which of them wins is not defined)."""

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
            if conn.dialect.name == "postgresql":
                over = _over_arrays(self.statement, conn.dialect, plan)
            else:
                over = _over_json(self.statement, plan)
            planned = self._plans[(conn.dialect.name, keys)] = (plan, over)
        plan, over = planned
        values = [plan.row(v) for v in rows]
        cursor = conn.connection.cursor()
        try:
            if over is None or len(values) == 1:
                cursor.executemany(plan.sql, values)
            elif conn.dialect.name == "postgresql":
                cursor.execute(over, tuple(list(column) for column in zip(*values, strict=True)))
            else:
                try:
                    packed = json.dumps(values, ensure_ascii=False, allow_nan=False)
                except (TypeError, ValueError):  # bytes, or a float JSON has no word for
                    packed = None
                # SQLite's ->> ends a text at a NUL character: such rows go as they are.
                if packed is None or "\\u0000" in packed:
                    cursor.executemany(plan.sql, values)
                else:
                    cursor.execute(over, (packed,))
        finally:
            cursor.close()


def _over_rows(statement: UpdateBase, body: str, source: str) -> str | None:
    """``body`` (the statement's text, its placeholders turned into ``b.pN``) made to read its
    rows from ``source`` (a row source aliased ``b``): ``INSERT ... SELECT ... FROM source``,
    ``UPDATE ... FROM source WHERE``. None when the statement is not of a shape rewritten here
    (it then runs by executemany)."""
    if isinstance(statement, Insert):
        head, values_kw, rest = body.partition(" VALUES (")
        if not values_kw or not rest.endswith(")") or "(" in rest[:-1]:
            return None
        return f"{head} SELECT {rest[:-1]} FROM {source}"
    head, where_kw, rest = body.partition(" WHERE ")
    if not where_kw or not head.startswith("UPDATE ") or " RETURNING " in rest:
        return None
    return f"{head} FROM {source} WHERE {rest}"


def _over_json(statement: UpdateBase, plan: _Plan) -> str | None:
    """The SQLite statement rewritten to take its rows as one JSON array of arrays of the
    parameters, read with json_each: ``INSERT ... SELECT ... FROM (...)``, ``UPDATE ... FROM
    (...) WHERE``. None when the statement is not of a shape rewritten here."""
    count = len(plan.parameters)
    if "'" in plan.sql or '"' in plan.sql or plan.sql.count("?") != count:
        return None  # a "?" that is not a placeholder, or quoted names: not rewritten
    numbers = iter(range(1, count + 1))
    body = re.sub(r"\?", lambda _: f"b.p{next(numbers)}", plan.sql)
    source = (
        "(SELECT " + ", ".join(f"value ->> {i - 1} AS p{i}" for i in range(1, count + 1))
        + " FROM json_each(?)) AS b"
    )
    return _over_rows(statement, body, source)


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
    return _over_rows(statement, body, source)


class Prepared:
    """``statement`` run once with a dictionary of values, through the driver like `Bulk`: compiled
    once per dialect (and set of inserted columns), its parameters converted as SQLAlchemy would,
    and the rows it returns as tuples with SQLAlchemy's conversions of their columns. SQLAlchemy's
    own execution of a statement costs several times what SQLite takes to run it.

    ``packed``, for a SELECT that returns many rows: on SQLite they come back as one row holding
    all of them (``json_group_array``), read in one step instead of one per row. Their order is
    not kept (the caller sorts what needs sorting); for a few rows the JSON costs more than the
    steps it saves. Results with REAL or BLOB columns, which JSON would alter, are never packed.

    For statements without expanding IN parameters (use `any_of`) and whose columns have no
    Python-side defaults."""

    def __init__(self, statement: Select[Any] | UpdateBase, *, packed: bool = False) -> None:
        self.statement = statement
        self._inserts = isinstance(statement, Insert)
        self._packed = _packed(statement) if packed else None
        self._plans: dict[tuple[str, tuple[str, ...] | None], _Plan] = {}

    def rows(self, conn: Connection, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        plan = self._plan(conn, values)
        cursor = conn.connection.cursor()
        try:
            cursor.execute(plan.sql, plan.row(values))
            if not plan.results:
                return []
            if plan.packed:
                row = cursor.fetchone()
                assert row is not None  # an aggregate returns one row
                return plan.converted(json.loads(row[0]))
            return plan.converted(cursor.fetchall())
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
            if self._packed is not None and conn.dialect.name == "sqlite":
                plan = _compile(self._packed, conn.dialect, keys, many=False)
                # The packed statement returns one JSON text; its rows get the inner columns'
                # conversions.
                inner = _compile(self.statement, conn.dialect, keys, many=False)
                plan = _Plan(plan.sql, plan.parameters, inner.results, packed=True)
            else:
                plan = _compile(self.statement, conn.dialect, keys, many=False)
            self._plans[(conn.dialect.name, keys)] = plan
        return plan


_NOT_PACKED = (Float, Numeric, LargeBinary)


def _packed(statement: Select[Any] | UpdateBase) -> Select[Any] | None:
    """The SELECT returning ``statement``'s rows as one JSON array of arrays (SQLite), or None
    when they cannot be packed."""
    if not isinstance(statement, Select):
        raise ValueError("only a SELECT can be packed")
    if any(isinstance(c.type, _NOT_PACKED) for c in statement.selected_columns):
        return None
    inner = statement.subquery()
    return select(func.json_group_array(func.json_array(*inner.c)))
