"""Scalar subqueries written once as SQL text, for hot queries whose ORM form is costly to build."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, TypeVar, cast

from django.core.exceptions import EmptyResultSet
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import (
    Aggregate,
    CharField,
    DateTimeField,
    Expression,
    F,
    Field,
    IntegerField,
    JSONField,
    Model,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.base import ModelState
from django.db.models.expressions import RawSQL
from django.db.models.signals import post_init, pre_init
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone

from vantage6.db import features, loop_connection, loop_reader

# The compiled queries below are kept per database (its alias), not per connection: the connections of
# every thread to one database compile the same SQL, and each new request thread (the pool grows with
# the load) would otherwise compile them all again (several ms for the caller's lookup alone).

# Builds the SQL of a subquery for one database connection: ``{outer}`` stands for the outer row's
# column; returns the text and its parameters.
SqlBuilder = Callable[[BaseDatabaseWrapper], tuple[str, tuple]]

_built: dict[tuple[SqlBuilder, str], tuple[str, tuple]] = {}


class CorrelatedSQL(Expression):
    """A subquery correlated with a column of the outer row (its primary key unless ``outer`` names
    another field), from SQL built once per backend.

    Resolving the ORM form of a subquery with aggregates and conditions takes hundreds of expression
    calls on every request; this one resolves a single column reference, whatever alias the outer
    table has.
    """

    contains_aggregate = False
    contains_over_clause = False

    def __init__(self, build: SqlBuilder, output_field: Field, outer: str = "pk") -> None:
        super().__init__(output_field=output_field)
        self.build = build
        self.outer = F(outer)

    def get_source_expressions(self) -> list:
        return [self.outer]

    def set_source_expressions(self, exprs: Sequence) -> None:
        (self.outer,) = exprs

    def as_sql(self, compiler, connection: BaseDatabaseWrapper) -> tuple[str, tuple]:
        outer_sql, outer_params = compiler.compile(self.outer)
        assert not outer_params, "the outer key is a plain column"
        key = (self.build, connection.vendor)
        if key not in _built:
            _built[key] = self.build(connection)
        sql, params = _built[key]
        return f"({sql.replace('{outer}', outer_sql)})", params


M = TypeVar("M", bound=Model)
N = TypeVar("N", bound=Model)


class PkLookup(Generic[M]):
    """``queryset.filter(pk=...)`` for one row, compiled to SQL once per database.

    For lookups on every request (the caller, the run a node writes): each call only runs the SQL
    and builds the row, as ``QuerySet`` iteration would (field converters, annotations as
    attributes, the objects of ``select_related`` one level deep through forward foreign keys).
    """

    _MARKER = 987_654_321  # a primary key value that stands for the looked-up one while compiling

    def __init__(self, queryset: Callable[[], QuerySet[M]]) -> None:
        self.queryset = queryset
        self._plans: dict[str, _Plan] = {}

    @cached_property
    def model(self) -> type[M]:
        """The model of the rows, as ``QuerySet.model`` (asked on every request by the permission
        checks: the queryset, with its annotations, is built once for it)."""
        return self.queryset().model

    def _plan(self, connection: BaseDatabaseWrapper) -> _Plan:
        compiler = self.queryset().filter(pk=self._MARKER)[:1].query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        (slot,) = (i for i, value in enumerate(params) if value == self._MARKER)
        _prepare(connection, sql)
        width = len(compiler.select)
        return _Plan(sql=sql, params=list(params), slot=slot, width=width, **_instance_plan(compiler))

    def __call__(self, pk: int) -> M | None:
        if not _INT64_MIN <= pk <= _INT64_MAX:
            return None  # no such row: what the ORM answers instead of an overflow
        connection = connections[DEFAULT_DB_ALIAS]
        plan = self._plan_on(connection)
        with connection.cursor() as cursor:
            cursor.execute(plan.sql, plan.bind(pk, connection))
            row = cursor.fetchone()
        if row is None:
            return None
        return cast(M, _instance(plan, _converted(row, plan.converters, connection), connection.alias))

    def with_other(
        self, pk: int, other: PkLookup[N], other_pk: int, condition: Statement
    ) -> tuple[M | None, N | None, bool]:
        """``self(pk)``, ``other(other_pk)`` and whether the SQL ``condition`` holds, read by one
        statement (one round trip instead of two): a write that needs its caller's row with the row it
        writes."""
        if not (_INT64_MIN <= pk <= _INT64_MAX and _INT64_MIN <= other_pk <= _INT64_MAX):
            return self(pk), other(other_pk), False  # each answers None for a key out of range
        connection = connections[DEFAULT_DB_ALIAS]
        plan, other_plan = self._plan_on(connection), other._plan_on(connection)
        condition_sql, condition_params = condition
        # The lookups' rows side by side (NULLs where one finds none), a subquery each: their columns
        # keep their places, whatever their names.
        sql = (
            f"SELECT ({condition_sql}), v6_a.*, v6_b.* FROM (SELECT 1) v6_one"
            f" LEFT JOIN ({plan.sql}) v6_a ON TRUE LEFT JOIN ({other_plan.sql}) v6_b ON TRUE"
        )
        _prepare(connection, sql)
        params = [*(condition_params or ()), *plan.bind(pk, connection)]
        params += other_plan.bind(other_pk, connection)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            # One row, whatever the lookups find (FROM one row, LEFT JOINs): unpacked, not asserted, so that
            # another count fails here even under ``python -O``.
            (row,) = cursor.fetchall()
        held = bool(row[0])
        first, second = row[1 : 1 + plan.width], row[1 + plan.width :]
        return (
            cast(M | None, plan.built(first, connection)),
            cast(N | None, other_plan.built(second, connection)),
            held,
        )

    def _plan_on(self, connection: BaseDatabaseWrapper) -> _Plan:
        plan = self._plans.get(connection.alias)
        if plan is None:
            plan = self._plans[connection.alias] = self._plan(connection)
        return plan


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class _Rows:
    """Where one model's columns are in a row of the compiled query."""

    model: type[Model]
    start: int
    end: int
    attnames: list[str]
    pk_index: int
    plain: bool  # instances need no more than their values and state (see ``_plain``)

    def build(self, alias: str, row: Sequence) -> Model | None:
        values = row[self.start : self.end]
        if values[self.pk_index] is None:
            return None  # no related row (a null foreign key), as the ORM gives
        if not self.plain:
            return self.model.from_db(alias, self.attnames, values)
        # What ``from_db`` leaves: the loaded values as attributes (the others deferred), the state of
        # a row of ``alias``; without ``__init__``'s work per field and its signals.
        instance = self.model.__new__(self.model)
        instance.__dict__.update(zip(self.attnames, values, strict=True))
        state = instance._state = ModelState()
        state.adding, state.db = False, alias
        return instance


def _plain(model: type[Model]) -> bool:
    """Whether ``from_db`` of ``model`` is Django's, building the instance with Django's ``__init__``
    and nothing listening to its signals."""
    return (
        model.__init__ is Model.__init__
        and getattr(model.from_db, "__func__", None) is Model.from_db.__func__  # type: ignore[attr-defined]
        and not pre_init.has_listeners(model)
        and not post_init.has_listeners(model)
    )


@dataclass(frozen=True)
class _Instances:
    """How a compiled query's rows become model instances, as ``QuerySet`` iteration builds them."""

    row: _Rows
    related: list[tuple[_Rows, Callable, Callable]]
    annotations: dict[str, int]
    converters: dict


@dataclass(frozen=True)
class _Plan(_Instances):
    sql: str
    params: list
    slot: int
    width: int  # the columns of its rows

    def bind(self, pk: int, connection: BaseDatabaseWrapper) -> list:
        """The query's parameters for the row with this primary key."""
        params = list(self.params)
        params[self.slot] = self.row.model._meta.pk.get_db_prep_value(pk, connection)
        return params

    def built(self, row: Sequence, connection: BaseDatabaseWrapper) -> Model | None:
        """The instance of a row of the query (None: a row of NULLs, no row found)."""
        if row[self.row.start + self.row.pk_index] is None:
            return None
        return _instance(self, _converted(row, self.converters, connection), connection.alias)


def _rows(compiler, klass_info: dict) -> _Rows:
    fields = klass_info["select_fields"]
    start, end = fields[0], fields[-1] + 1
    attnames = [column[0].target.attname for column in compiler.select[start:end]]
    model = klass_info["model"]
    return _Rows(model, start, end, attnames, attnames.index(model._meta.pk.attname), _plain(model))


def _instance_plan(compiler) -> dict:
    """The fields of ``_Instances`` for the query of ``compiler`` (compiled: ``as_sql`` was called)."""
    klass_info = compiler.klass_info
    related = []
    for info in klass_info.get("related_klass_infos", []):
        assert not info["reverse"] and not info.get("related_klass_infos"), "forward, one level"
        related.append((_rows(compiler, info), info["local_setter"], info["remote_setter"]))
    return {
        "row": _rows(compiler, klass_info),
        "related": related,
        "annotations": dict(compiler.annotation_col_map or {}),
        "converters": compiler.get_converters([col for col, _, _ in compiler.select[: compiler.col_count]]),
    }


def _instance(plan: _Instances, row: Sequence, alias: str) -> Model:
    """The model instance of one row (its converters applied), with its related objects and annotations."""
    instance = cast(Model, plan.row.build(alias, row))
    for rows, local_setter, remote_setter in plan.related:
        obj = rows.build(alias, row)
        local_setter(instance, obj)
        if obj is not None:
            remote_setter(obj, instance)
    for name, position in plan.annotations.items():
        setattr(instance, name, row[position])
    return instance


def _converted(row: Sequence, converters: dict, connection: BaseDatabaseWrapper) -> Sequence:
    """``row`` with the field converters of its columns applied, as ``QuerySet`` iteration does."""
    if not converters:
        return row
    row = list(row)
    for position, (functions, expression) in converters.items():
        value = row[position]
        for converter in functions:
            value = converter(value, expression, connection)
        row[position] = value
    return row


@dataclass(frozen=True)
class _Query:
    sql: str
    params: list
    slots: list[tuple[int, str]]
    converters: dict


class CompiledRows:
    """The rows of a query whose parameters are integers, compiled to SQL once per database.

    ``build(**values)`` gives the query (a ``values_list``); it is built once per database with a
    distinct stand-in integer for each named value, whose places among the SQL's parameters are then
    filled on every call. Rows come as tuples with the fields' converters applied, as the ORM's.
    """

    _MARKER = 987_654_000  # stand-ins: _MARKER, _MARKER + 1, ... (values no query of ours uses)

    def __init__(self, build: Callable[..., QuerySet], *names: str) -> None:
        self.build, self.names = build, names
        self._plans: dict[str, _Query] = {}
        # (database, the guard's text) -> the query with that guard (``lock_later``); the guards are
        # texts of the code (one per form of a caller's check), so a bounded set.
        self._guarded: dict[tuple[str, str], _Guarded] = {}

    def _plan(self, connection: BaseDatabaseWrapper) -> _Query:
        markers = {self._MARKER + i: name for i, name in enumerate(self.names)}
        queryset = self.build(**{name: marker for marker, name in markers.items()})
        compiler = queryset.query.get_compiler(connection=connection)
        # Django compiles a locking query in a transaction only (a lock may be sent outside one, ``lead``);
        # the transaction sends nothing.
        locking = queryset.query.select_for_update and connection.get_autocommit()
        with transaction.atomic() if locking else contextlib.nullcontext():
            sql, params = compiler.as_sql()
        slots = [(i, markers[value]) for i, value in enumerate(params) if value in markers]
        assert {name for _, name in slots} == set(self.names), "every value is a parameter"
        converters = compiler.get_converters([col for col, _, _ in compiler.select[: compiler.col_count]])
        _prepare(connection, sql)
        return _Query(sql, list(params), slots, converters)

    def query(self, connection: BaseDatabaseWrapper, values: dict[str, int]) -> tuple[_Query, list]:
        """The compiled query for this connection and its parameters for ``values``."""
        plan = self._plans.get(connection.alias)
        if plan is None:
            plan = self._plans[connection.alias] = self._plan(connection)
        params = list(plan.params)
        for position, name in plan.slots:
            params[position] = values[name]
        return plan, params

    def __call__(self, **values: int) -> list[tuple]:
        if not _in_range(values):
            return []  # no such row: what the ORM answers instead of an overflow
        connection = connections[DEFAULT_DB_ALIAS]
        plan, params = self.query(connection, values)
        with connection.cursor() as cursor:
            cursor.execute(plan.sql, params)
            rows = cursor.fetchall()
        return [tuple(_converted(row, plan.converters, connection)) for row in rows]

    async def on_loop(self, **values: int) -> list[tuple] | None:
        """``self(**values)`` read on the running event loop's thread (``vantage6.db.LoopReader``);
        None where it was not read there: the query is not compiled yet (a call of the usual kind
        compiles it), or the reader cannot read now."""
        if not _in_range(values):
            return []
        connection = loop_connection(DEFAULT_DB_ALIAS)
        plan = self._plans.get(connection.alias)
        if plan is None:
            return None
        params = list(plan.params)
        for position, name in plan.slots:
            params[position] = values[name]
        rows = await loop_reader(connection).rows(plan.sql, params)
        if rows is None:
            return None
        return [tuple(_converted(row, plan.converters, connection)) for row in rows]

    def lock_later(self, guard: Statement | None = None, **values: int) -> None:
        """Take the row locks of this query (a ``select_for_update`` one) with the next statement, in
        its query string, where the database backend can (``lead``: one round trip less on PostgreSQL;
        each statement of a query string takes its own snapshot, so the next one sees what was committed
        before the locks were granted; outside a transaction the two run as one), else at once. Without
        row locks (SQLite, whose one writer excludes the others): nothing. ``guard``: an SQL condition
        without which no row is locked (the caller's check of a write that checks it itself): a caller
        it refuses neither waits for the locks nor holds them."""
        connection = connections[DEFAULT_DB_ALIAS]
        if not connection.features.has_select_for_update or not _in_range(values):
            return
        plan, params = self.query(connection, values)
        sql = plan.sql
        if guard is not None:
            guard_sql, guard_params = guard
            guarded = self._guarded.get((connection.alias, guard_sql))
            if guarded is None:
                guarded = self._guarded[(connection.alias, guard_sql)] = _guarded(connection, sql, guard_sql)
            sql, before = guarded.sql, guarded.params_before
            params = [*params[:before], *(guard_params or ()), *params[before:]]
        lead = getattr(connection, "lead", None)
        if lead is not None:
            lead(sql, params)
            return
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


@dataclass(frozen=True)
class _Guarded:
    """A compiled query with one more condition in its WHERE."""

    sql: str
    params_before: int  # how many of the query's parameters come before the condition's


def _guarded(connection: BaseDatabaseWrapper, sql: str, guard_sql: str) -> _Guarded:
    """The compiled query ``sql`` (of one table, with a WHERE: its first) with the condition
    ``guard_sql`` as one more of its WHERE (Django writes a WHERE of several conditions in parentheses:
    it is one operand of the AND), prepared as the query itself is."""
    head, where, tail = sql.partition(" WHERE ")
    if not where or "(SELECT" in head:
        raise ValueError(f"not a query of one table with a WHERE: {sql}")
    guarded = _Guarded(f"{head} WHERE ({guard_sql}) AND {tail}", head.count("%s"))
    _prepare(connection, guarded.sql)
    return guarded


def _prepare(connection: BaseDatabaseWrapper, sql: str) -> None:
    """Have the server keep the plan of this SQL, run on every request, where the backend can (on
    PostgreSQL a prepared statement per connection: no parsing and planning on each run)."""
    prepare = getattr(connection, "prepare", None)
    if prepare is not None:
        prepare(sql)


def _in_range(values: dict[str, int]) -> bool:
    return all(_INT64_MIN <= value <= _INT64_MAX for value in values.values())


# Keys beyond the databases' 64-bit integers match no row (SQLite raises on them instead; Django
# checks the range of integer fields, but not of a primary key that is a link to a parent table).
MAX_KEY = 2**63 - 1


def by_pk(queryset: QuerySet[M], pk: int | str) -> M | None:
    """The row of ``queryset`` with this primary key, or None (``first()`` would add an ORDER BY)."""
    if not -MAX_KEY - 1 <= int(pk) <= MAX_KEY:  # out of the database's integers: no such row
        return None
    rows = list(queryset.filter(pk=pk)[:1])
    return rows[0] if rows else None


class Joined(Aggregate):
    """The rows' values as one string joined by ``separator``, on SQLite and PostgreSQL."""

    function = "GROUP_CONCAT"
    # The separator is a constant of the code, written into the SQL as the hand-written form was.
    template = "%(function)s(%(distinct)s%(expressions)s, '%(separator)s')"

    def __init__(self, expression: Expression | str, separator: str) -> None:
        assert "'" not in separator and "%" not in separator, "a plain separator"
        super().__init__(expression, separator=separator, output_field=CharField())

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, tuple]:
        return self.as_sql(compiler, connection, function="STRING_AGG", **extra)


def joined(queryset: QuerySet, expression: Expression | str, separator: str = ",") -> Subquery:
    """A scalar subquery: ``expression`` over all rows of ``queryset`` joined into one string (NULL
    without rows). The constant grouping makes the aggregate span the whole queryset."""
    rows = queryset.order_by().annotate(_all=Value(1)).values("_all")
    return Subquery(
        rows.annotate(joined=Joined(expression, separator)).values("joined"), output_field=CharField()
    )


def _inserted_values(fields: Sequence[Field], instance: Model, connection: BaseDatabaseWrapper) -> list:
    """The values of ``fields`` of a new ``instance``, as the database takes them."""
    return [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]


# A field's preparation of a value for an INSERT, as ``pre_save`` and ``get_db_prep_save`` make it.
Preparer = Callable[[object], object]


def _preparer(field: Field, connection: BaseDatabaseWrapper) -> Preparer | None:
    """``field``'s preparation of a given value in one call, for the plain field types of the hot
    inserts (the ORM's chain of calls per field costs more than the insert's other work); None for
    any other field, whose values go through the ORM."""
    ops, kind = connection.ops, type(field)
    if kind is DateTimeField and cast(DateTimeField, field).auto_now_add:
        return lambda _value: ops.adapt_datetimefield_value(timezone.now())
    if kind is IntegerField:
        return lambda value: (
            None if value is None else ops.adapt_integerfield_value(int(cast(Any, value)), "IntegerField")
        )
    if kind is CharField:
        return lambda value: value if value is None or isinstance(value, str) else str(value)
    if kind is JSONField and cast(JSONField, field).encoder is None:
        return lambda value: None if value is None else ops.adapt_json_value(value, None)
    return None


def _keyed_row(
    fields: Sequence[Field],
    obj: Model,
    connection: BaseDatabaseWrapper,
    keyed: Sequence[str],
    key: str,
    *,
    typed: bool = False,
    queried: dict[str, Statement] | None = None,
) -> tuple[list[str], list]:
    """The places of ``obj``'s values of ``fields`` in an ``INSERT``, those of the fields ``keyed`` the
    SQL ``key``, and the parameters of the others (as ``_inserted_values``). ``typed``: each place cast
    to its column's type (without its length: a value is not cut), for rows selected from ``VALUES``,
    whose untyped values would be taken as text. ``queried``: fields whose value is a scalar
    subquery's, by name."""
    places, params = [], []
    for field in fields:
        subquery = queried.get(field.name) if queried else None
        if field.name in keyed:
            places.append(key)
        elif subquery is not None:
            places.append(f"({subquery[0]})")
            params.extend(subquery[1])
        else:
            places.append(f"CAST(%s AS {_column_type(field, connection)})" if typed else "%s")
            params.append(field.get_db_prep_save(field.pre_save(obj, True), connection))
    return places, params


# A column's type without its length, by field and backend: ``db_type`` of a foreign key builds a field.
_column_types: dict[tuple[Field, str], str] = {}


def _column_type(field: Field, connection: BaseDatabaseWrapper) -> str:
    key = (field, connection.vendor)
    column_type = _column_types.get(key)
    if column_type is None:
        column_type = _column_types[key] = cast(str, field.db_type(connection)).partition("(")[0]
    return column_type


def _set_key(obj: Model, names: Sequence[str], key: object) -> None:
    """Set the fields ``names`` of ``obj`` (their columns: the key of a foreign key) to ``key``."""
    for name in names:
        setattr(obj, cast(Field, obj._meta.get_field(name)).attname, key)


def _saved(instance: M, pk: object, alias: str) -> M:
    """``instance`` as a row of database ``alias`` with primary key ``pk``, as ``save`` leaves it."""
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = alias
    return instance


# A statement and its parameters.
Statement = tuple[str, list]

# The rows a ``CompiledUpdate.matching`` changed, in the data-modifying ``WITH`` of the writes that go
# with them (``then``), and the condition of those writes.
_CHANGED = "changed"
_IF_CHANGED = f"EXISTS (SELECT 1 FROM {_CHANGED})"


class _CompiledWrite(Generic[M]):
    """A statement writing ``fields`` of one row of ``model``, its SQL written once per database backend."""

    def __init__(self, model: type[M], fields: Sequence[str]) -> None:
        meta = model._meta
        assert meta.pk is not None
        self.model = model
        self.fields = [cast(Field, meta.get_field(name)) for name in fields]
        self.table, self.pk_column = meta.db_table, cast(str, meta.pk.column)
        self.columns = [cast(str, field.column) for field in self.fields]
        self._sql: dict[str, str] = {}

    def _build(self, connection: BaseDatabaseWrapper) -> str:
        raise NotImplementedError

    def _column(self, name: str) -> str:
        return cast(str, cast(Field, self.model._meta.get_field(name)).column)

    def sql(self, connection: BaseDatabaseWrapper) -> str:
        sql = self._sql.get(connection.vendor)
        if sql is None:
            sql = self._sql[connection.vendor] = self._build(connection)
        return sql


class CompiledInsert(_CompiledWrite[M]):
    """``Model.objects.create(**values)`` for one row of ``fields``, its SQL written once per database
    backend: the hot writes (audit records, ports) skip building an ``InsertQuery`` on every call.

    Values are prepared as the ORM prepares them (``pre_save``, so ``auto_now_add`` and defaults of the
    model apply, then ``get_db_prep_save``); model signals are not sent (none of its models has
    receivers). Gives the saved instance, its primary key set.
    """

    BATCH = 500  # rows per statement of ``many`` (well below the databases' limits of parameters)
    # ``with_children`` statements of up to this many child rows are prepared (``_prepare``): their texts
    # are a bounded set (one per count of rows of each child table and of the condition's parameters);
    # a larger statement's planning is a smaller part of its work.
    PREPARED_CHILDREN = 12

    def __init__(self, model: type[M], fields: Sequence[str]) -> None:
        super().__init__(model, fields)
        self._given = {field.name for field in self.fields if not getattr(field, "auto_now_add", False)}
        self._preparers: dict[str, list[Preparer] | None] = {}

    def _params(self, values: dict[str, object], connection: BaseDatabaseWrapper) -> list:
        """The parameters of ``create(**values)``: without building an instance where every field
        has a ``_preparer`` and ``values`` gives each (no default to apply), else as the ORM makes them."""
        # Per backend, as the SQL: the operations they call read settings only, the same on every connection.
        if connection.vendor not in self._preparers:
            found = [_preparer(field, connection) for field in self.fields]
            self._preparers[connection.vendor] = None if None in found else cast(list, found)
        preparers = self._preparers[connection.vendor]
        if preparers is None or values.keys() != self._given:
            return _inserted_values(self.fields, self.model(**values), connection)
        return [
            prepare(values.get(field.name)) for field, prepare in zip(self.fields, preparers, strict=True)
        ]

    def _build(self, connection: BaseDatabaseWrapper) -> str:
        quote = connection.ops.quote_name
        columns = ", ".join(quote(column) for column in self.columns)
        values = ", ".join(["%s"] * len(self.columns))
        sql = f"INSERT INTO {quote(self.table)} ({columns}) VALUES ({values})"
        if connection.features.can_return_columns_from_insert:
            sql += f" RETURNING {quote(self.pk_column)}"
        return sql

    def __call__(self, **values: object) -> M:
        connection = connections[DEFAULT_DB_ALIAS]
        instance = self.model(**values)
        params = _inserted_values(self.fields, instance, connection)
        with connection.cursor() as cursor:
            cursor.execute(self.sql(connection), params)
            pk = (
                cursor.fetchone()[0]
                if connection.features.can_return_columns_from_insert
                else cursor.lastrowid
            )
        return _saved(instance, pk, connection.alias)

    def later(self, queried: dict[str, Statement] | None = None, **values: object) -> None:
        """``create(**values)`` sent with the transaction's next statement or its commit, where the
        database backend can (``defer``: one round trip less on PostgreSQL), else at once. Nothing is
        given back: for rows nothing reads in the same request (audit records). ``queried``: fields
        whose value is a scalar subquery's, by name."""
        connection = connections[DEFAULT_DB_ALIAS]
        if queried:
            sql, params = self._selected(connection, queried, values)
        else:
            sql, params = self.sql(connection).partition(" RETURNING ")[0], self._params(values, connection)
        defer = getattr(connection, "defer", None)
        if defer is not None:
            defer(sql, params)
            return
        with connection.cursor() as cursor:
            cursor.execute(sql, params)

    def if_changed(self, queried: dict[str, Statement] | None = None, **values: object) -> Statement:
        """``create(**values)`` as one of the writes of ``CompiledUpdate.matching`` (``then``): only
        if that statement changed a row. ``queried``: fields whose value is a scalar subquery's, by name
        (a value the statement finds, not read before it)."""
        sql, params = self._selected(connections[DEFAULT_DB_ALIAS], queried, values)
        return f"{sql} WHERE {_IF_CHANGED}", params

    def _selected(
        self, connection: BaseDatabaseWrapper, queried: dict[str, Statement] | None, values: dict[str, object]
    ) -> Statement:
        """``create(**values)`` as ``INSERT ... SELECT``, the fields of ``queried`` by their subqueries."""
        places, params = [], []
        for field, value in zip(self.fields, self._params(values, connection), strict=True):
            subquery = queried.get(field.name) if queried else None
            if subquery is None:
                places.append("%s")
                params.append(value)
            else:
                places.append(f"({subquery[0]})")
                params.extend(subquery[1])
        head = self.sql(connection).partition(" VALUES ")[0]
        return f"{head} SELECT {', '.join(places)}", params

    def with_children(
        self,
        values: dict[str, object],
        children: Sequence[Children],
        *,
        own: Sequence[str] = (),
        condition: Statement | None = None,
    ) -> tuple[M, list[list[Model]]] | None:
        """``create(**values)`` with the rows of other tables that refer to it, ``children``: for each
        its insert, the field that refers to the new row and a function giving the rows' values (the
        ``many`` of that insert) for the new instance. The fields ``own`` take the new row's key too.

        Where the backend can (PostgreSQL), one statement (a data-modifying ``WITH``, atomic on its own,
        one round trip): the key is drawn from the table's sequence first, only if the SQL ``condition``
        holds then, and every row is written from there (None, and nothing written, when it does not).
        Elsewhere one statement per table in a transaction, after one that checks ``condition`` in it.
        The saved instance and the children's instances, per insert (as ``many_later`` gives them)."""
        connection = connections[DEFAULT_DB_ALIAS]
        quote = connection.ops.quote_name
        if not features(connection).supports_data_modifying_with:
            with transaction.atomic():
                if condition is not None:
                    with connection.cursor() as cursor:
                        cursor.execute(f"SELECT {condition[0]}", condition[1])
                        if not cursor.fetchone()[0]:
                            return None
                instance = self(**values)
                if own:
                    sets = ", ".join(f"{quote(self._column(name))} = %s" for name in own)
                    with connection.cursor() as cursor:
                        cursor.execute(
                            f"UPDATE {quote(self.table)} SET {sets} WHERE {quote(self.pk_column)} = %s",
                            [instance.pk] * (len(own) + 1),
                        )
                    _set_key(instance, own, instance.pk)
                return instance, [insert.many_later(rows(instance)) for insert, _, rows in children]
        instance = self.model(**values)
        key = "(SELECT id FROM k)"
        where, params = (f" WHERE {condition[0]}", list(condition[1])) if condition else ("", [])
        places, row_params = _keyed_row(self.fields, instance, connection, own, key)
        columns = ", ".join(quote(column) for column in [self.pk_column, *self.columns])
        # Every row is selected only if k has one: none is written when it has not.
        parts = [
            f"k AS MATERIALIZED (SELECT nextval(pg_get_serial_sequence(%s, %s)) AS id{where})",
            f"t AS (INSERT INTO {quote(self.table)} ({columns}) SELECT {', '.join([key, *places])} FROM k)",
        ]
        params = [quote(self.table), self.pk_column, *params, *row_params]
        written = [
            (insert, reference, [insert.model(**row) for row in rows(instance)])
            for insert, reference, rows in children
        ]
        for i, (insert, reference, objects) in enumerate(written):
            rows_sql = []
            for obj in objects:
                places, row_params = _keyed_row(insert.fields, obj, connection, [reference], key, typed=True)
                rows_sql.append(f"({', '.join(places)})")
                params += row_params
            if rows_sql:
                head = insert.sql(connection).partition(" VALUES ")[0]
                selected = f"SELECT * FROM (VALUES {', '.join(rows_sql)}) AS v"
                parts.append(f"c{i} AS ({head} {selected} WHERE EXISTS (SELECT 1 FROM k))")
        sql = f"WITH {', '.join(parts)} SELECT id FROM k"
        if sum(len(objects) for _, _, objects in written) <= self.PREPARED_CHILDREN:
            _prepare(connection, sql)  # one text per count of child rows and condition's parameters
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        (pk,) = row
        _set_key(instance, own, pk)
        for _, reference, objects in written:
            for obj in objects:
                _set_key(obj, [reference], pk)
        return _saved(instance, pk, connection.alias), [objects for _, _, objects in written]

    def many(self, rows: Sequence[dict]) -> list[M]:
        """``bulk_create`` of ``rows`` (each the values of one ``create``): one statement per
        ``BATCH`` rows; the saved instances, their primary keys set, in the order of ``rows``."""
        connection = connections[DEFAULT_DB_ALIAS]
        instances = [self.model(**values) for values in rows]
        if not connection.features.can_return_rows_from_bulk_insert:  # an SQLite older than 3.35
            return self.model._default_manager.bulk_create(instances)
        returning = self.sql(connection).partition(" RETURNING ")[2]
        for batch, sql, params in self._batches(instances, connection):
            with connection.cursor() as cursor:
                cursor.execute(f"{sql} RETURNING {returning}", params)
                keys = [row[0] for row in cursor.fetchall()]
            for instance, pk in zip(batch, keys, strict=True):
                _saved(instance, pk, connection.alias)
        return instances

    def many_later(self, rows: Sequence[dict]) -> list[M]:
        """``many(rows)`` sent with the transaction's next statement or its commit, where the database
        backend can (``defer``), else at once. Deferred, the instances have no primary keys: for rows
        nothing reads in the same request but through these instances' other fields."""
        connection = connections[DEFAULT_DB_ALIAS]
        defer = getattr(connection, "defer", None)
        if defer is None:
            return self.many(rows)
        instances = [self.model(**values) for values in rows]
        for _batch, sql, params in self._batches(instances, connection):
            defer(sql, params)
        return instances

    def _batches(
        self, instances: list[M], connection: BaseDatabaseWrapper
    ) -> Iterator[tuple[list[M], str, list]]:
        """The ``INSERT`` of each ``BATCH`` of ``instances`` (without ``RETURNING``), and its parameters."""
        head, _, one = self.sql(connection).partition(" RETURNING ")[0].rpartition(" VALUES ")
        for start in range(0, len(instances), self.BATCH):
            batch = instances[start : start + self.BATCH]
            params = [
                field.get_db_prep_save(field.pre_save(instance, True), connection)
                for instance in batch
                for field in self.fields
            ]
            yield batch, f"{head} VALUES {', '.join([one] * len(batch))}", params


# A child table's rows of ``CompiledInsert.with_children``: its insert, the field that refers to the
# new row, the rows' values for the new instance.
Children = tuple[CompiledInsert, str, Callable[[Any], Sequence[dict]]]


class CompiledUpdate(_CompiledWrite[M]):
    """``instance.save(update_fields=fields)`` for a fixed list of fields, its SQL written once per
    database backend (no ``UpdateQuery`` built on every call; no model signals, as ``CompiledInsert``).
    """

    def _build(self, connection: BaseDatabaseWrapper) -> str:
        # Up to the key's condition, which each call completes.
        quote = connection.ops.quote_name
        columns = ", ".join(f"{quote(column)} = %s" for column in self.columns)
        return f"UPDATE {quote(self.table)} SET {columns} WHERE {quote(self.pk_column)}"

    def __call__(self, instance: M) -> None:
        connection = connections[DEFAULT_DB_ALIAS]
        with connection.cursor() as cursor:
            cursor.execute(self.sql(connection) + " = %s", self._params(instance, connection))
            if cursor.rowcount != 1:
                raise DatabaseError(f"{self.model.__name__} id={instance.pk} was not updated")

    def later(self, instance: M) -> None:
        """``self(instance)`` sent with the transaction's next statement or its commit where the database
        backend can (``defer``: one round trip less on PostgreSQL), else at once. Without the check that
        the row changed: for a row the transaction holds locked, which nothing reads again in it."""
        connection = connections[DEFAULT_DB_ALIAS]
        defer = getattr(connection, "defer", None)
        if defer is None:
            self(instance)
            return
        defer(self.sql(connection) + " = %s", self._params(instance, connection))

    def if_changed(self, instance: M) -> Statement:
        """``self(instance)`` as one of the writes of ``matching`` (``then``): only if that statement
        changed a row."""
        connection = connections[DEFAULT_DB_ALIAS]
        return f"{self.sql(connection)} = %s AND {_IF_CHANGED}", self._params(instance, connection)

    def _params(self, instance: M, connection: BaseDatabaseWrapper) -> list:
        params = [
            field.get_db_prep_save(field.pre_save(instance, False), connection) for field in self.fields
        ]
        params.append(instance.pk)
        return params

    def matching(
        self,
        condition: CompiledRows,
        keys: dict[str, int],
        values: Sequence[object],
        returning: Sequence[str],
        then: Sequence[Statement] = (),
        also: Statement | None = None,
        guard: Statement | None = None,
    ) -> list[tuple]:
        """``filter(pk__in=<the keys of condition's rows>).update(...)`` with the fields' ``values``, in
        one statement: the ``returning`` fields (integer columns, no converters) of the rows it changed.
        Needs ``UPDATE ... RETURNING`` (PostgreSQL; SQLite 3.35 or later). ``then``: writes (of
        ``if_changed``) made in the same statement if it changed a row (a data-modifying ``WITH``,
        atomic on its own: ``supports_data_modifying_with``). ``also``: a scalar subquery whose value
        ends each row. ``guard``: an SQL condition without which no row changes
        (the caller's, checked by the statement itself)."""
        if not _in_range(keys):
            return []
        connection = connections[DEFAULT_DB_ALIAS]
        params = [
            field.get_db_prep_save(value, connection)
            for field, value in zip(self.fields, values, strict=True)
        ]
        query, condition_params = condition.query(connection, keys)
        quote = connection.ops.quote_name
        columns = ", ".join(quote(self._column(name)) for name in returning)
        guarded = f" AND {guard[0]}" if guard is not None else ""
        update = f"{self.sql(connection)} IN ({query.sql}){guarded} RETURNING"
        selected = columns if also is None else f"{columns}, ({also[0]})"
        if then:
            writes = "".join(f", w{i} AS ({write})" for i, (write, _) in enumerate(then))
            sql = f"WITH {_CHANGED} AS ({update} {columns}){writes} SELECT {selected} FROM {_CHANGED}"
        else:
            sql = f"{update} {selected}"
        _prepare(connection, sql)  # the same text on every call
        with connection.cursor() as cursor:
            then_params = [param for _, write_params in then for param in write_params]
            also_params = also[1] if also is not None else []
            guard_params = guard[1] if guard is not None else []
            cursor.execute(sql, [*params, *condition_params, *guard_params, *then_params, *also_params])
            return cursor.fetchall()

    def rows(self, pks: Sequence[int], values: Sequence[object]) -> int:
        """``filter(pk__in=pks).update(...)`` with the fields' ``values``; how many rows it changed."""
        if not pks:
            return 0
        connection = connections[DEFAULT_DB_ALIAS]
        params = [
            field.get_db_prep_save(value, connection)
            for field, value in zip(self.fields, values, strict=True)
        ]
        keys = ", ".join(["%s"] * len(pks))
        with connection.cursor() as cursor:
            cursor.execute(f"{self.sql(connection)} IN ({keys})", [*params, *pks])
            return cursor.rowcount


class CompiledInsertIf(_CompiledWrite[M]):
    """``create(**values)`` of one row of ``model`` only if the query ``condition`` finds a row: a
    lookup and the write it allows in one statement, its SQL written once per database backend.
    Values are prepared as ``CompiledInsert`` prepares them. Gives the saved instance, or None when
    ``condition`` found no row (nothing is written).
    """

    def __init__(self, model: type[M], fields: Sequence[str], condition: CompiledRows) -> None:
        super().__init__(model, fields)
        self.condition = condition

    def _build(self, connection: BaseDatabaseWrapper) -> str:
        # Up to the condition's query, which each call completes.
        quote = connection.ops.quote_name
        columns = ", ".join(quote(column) for column in self.columns)
        values = ", ".join(["%s"] * len(self.columns))
        return f"INSERT INTO {quote(self.table)} ({columns}) SELECT {values} WHERE EXISTS"

    def _prepared(
        self, keys: dict[str, int], values: dict[str, object]
    ) -> tuple[BaseDatabaseWrapper, M, list, str, list] | None:
        """The connection, the new instance, its values, the condition's SQL and its parameters; None
        when ``keys`` cannot name a row."""
        if not _in_range(keys):
            return None
        connection = connections[DEFAULT_DB_ALIAS]
        instance = self.model(**values)
        query, condition_params = self.condition.query(connection, keys)
        params = _inserted_values(self.fields, instance, connection)
        return connection, instance, params, query.sql, condition_params

    def __call__(self, keys: dict[str, int], guard: Statement | None = None, **values: object) -> M | None:
        """The row of ``values``, if ``condition`` finds a row for ``keys`` (and ``guard`` holds: an SQL
        condition, the caller's, checked by the statement itself)."""
        if (prepared := self._prepared(keys, values)) is None:
            return None
        connection, instance, params, condition_sql, condition_params = prepared
        guarded, guard_params = (f" AND {guard[0]}", guard[1]) if guard is not None else ("", [])
        sql = f"{self.sql(connection)} ({condition_sql}){guarded}"
        returning = connection.features.can_return_columns_from_insert
        if returning:
            sql += f" RETURNING {connection.ops.quote_name(self.pk_column)}"
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, *condition_params, *guard_params])
            if returning:
                row = cursor.fetchone()
                pk = row[0] if row else None
            else:  # an SQLite older than 3.35
                pk = cursor.lastrowid if cursor.rowcount == 1 else None
        return None if pk is None else _saved(instance, pk, connection.alias)

    def with_entry(
        self,
        keys: dict[str, int],
        entry: CompiledInsert,
        entry_values: Callable[[M], dict],
        reference: str,
        guard: Statement | None = None,
        queried: dict[str, Statement] | None = None,
        **values: object,
    ) -> M | None:
        """``self(keys, **values)`` and, in the same statement, one row of ``entry`` (the values
        ``entry_values`` gives for the new instance) whose field ``reference`` is the new row's key:
        a data-modifying ``WITH`` (``supports_data_modifying_with``), atomic on its own. Neither row is
        written when ``condition`` finds no row, or ``guard`` (an SQL condition: the caller's, checked
        by the statement itself) does not hold. ``queried``: fields of ``entry`` whose value is a scalar
        subquery's, by name. Elsewhere the two statements in a transaction, the entry only after a row."""
        if not features(connections[DEFAULT_DB_ALIAS]).supports_data_modifying_with:
            with transaction.atomic():
                row = self(keys, guard, **values)
                if row is not None:
                    entry.later(queried, **{**entry_values(row), reference: row.pk})
            return row
        if (prepared := self._prepared(keys, values)) is None:
            return None
        connection, instance, params, condition_sql, condition_params = prepared
        noted = entry.model(**entry_values(instance))
        key = connection.ops.quote_name(self.pk_column)
        columns, noted_params = _keyed_row(
            entry.fields, noted, connection, [reference], f"n.{key}", queried=queried
        )
        head = entry.sql(connection).partition(" VALUES ")[0]
        guarded, guard_params = (f" AND {guard[0]}", guard[1]) if guard is not None else ("", [])
        sql = (
            f"WITH n AS ({self.sql(connection)} ({condition_sql}){guarded} RETURNING {key}), "
            f"e AS ({head} SELECT {', '.join(columns)} FROM n) SELECT {key} FROM n"
        )
        _prepare(connection, sql)  # the same text on every call
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, *condition_params, *guard_params, *noted_params])
            row = cursor.fetchone()
        return None if row is None else _saved(instance, row[0], connection.alias)


# A condition's shape: its structure, lookups and constants, with its integers as parameters:
# ("q", connector, negated, parts); a part is a shape or ("int", lookup), ("ints", lookup, count),
# ("const", lookup, value).
Shape = tuple


def _shape(condition: Q, values: list[int]) -> Shape | None:
    """The shape of ``condition``, its integers appended to ``values``; None for a condition of other
    values (expressions, querysets, ...): those are not compiled."""
    parts: list = []
    for child in condition.children:
        if isinstance(child, Q):
            part = _shape(child, values)
            if part is None:
                return None
            parts.append(part)
            continue
        lookup, value = cast(tuple, child)
        if type(value) is int:
            values.append(value)
            parts.append(("int", lookup))
        elif isinstance(value, list | tuple | set | frozenset) and all(type(v) is int for v in value):
            values.extend(value)
            parts.append(("ints", lookup, len(value)))
        elif value is None or isinstance(value, bool | str):
            parts.append(("const", lookup, value))
        else:
            return None
    return ("q", condition.connector, condition.negated, tuple(parts))


def _condition(shape: Shape, markers: Iterator[int]) -> Q:
    """The condition of ``shape`` with the next of ``markers`` for each of its integers."""
    _, connector, negated, parts = shape
    children: list = []
    for part in parts:
        if part[0] == "q":
            children.append(_condition(part, markers))
        elif part[0] == "int":
            children.append((part[1], next(markers)))
        elif part[0] == "ints":
            children.append((part[1], [next(markers) for _ in range(part[2])]))
        else:
            children.append((part[1], part[2]))
    return Q(*children, _connector=connector, _negated=negated)


def page_keys(queryset: QuerySet) -> QuerySet:
    """The primary keys of ``queryset``'s rows in its order, one a row, for a page whose keys are chosen
    first (sliced, they are the keys of a page). A DISTINCT list's own key query would select its sort
    columns too: its rows come once from a semi-join on its keys instead, in the same order."""
    if not queryset.query.distinct:
        return queryset.values("pk")
    once = queryset.model._default_manager.filter(pk__in=queryset.order_by().values("pk"))
    return once.order_by(*queryset.query.order_by).values("pk")


@dataclass(frozen=True)
class _ListPlan(_Instances):
    sql: str  # without LIMIT and OFFSET; its rows hold the number of all rows at ``total``
    params: list
    slots: list[tuple[int, int]]  # (position among the SQL's parameters, index of the condition's value)
    total: int
    count_sql: str
    count_params: list
    count_slots: list[tuple[int, int]]
    # The same rows and columns for a page past the first: the page's primary keys are chosen first, by
    # a query of the keys alone (its LIMIT and OFFSET are the values after the condition's), and only
    # those rows are read whole. The rows a deep page skips are then keys, not rows of every column
    # joined to their related rows (page 49,000 of 500,000 runs: 0.95 s before, 0.43 s so).
    deep_sql: str
    deep_params: list
    deep_slots: list[tuple[int, int]]


_TOTAL = "_rows_in_all"  # the column of a page's rows that holds the number of all rows


class CompiledList(Generic[M]):
    """The rows of ``queryset()`` that a condition (the permission engine's) leaves, a page at a time,
    compiled to SQL once per database and shape of the condition, ordering and DISTINCT:
    each request binds its own condition's values. Building and compiling the ORM's query of a list
    page and its count cost more than running them. Conditions of other values than integers,
    strings, booleans and None, and conditions Django finds empty, take the ORM's way.
    """

    _MARKER = 987_650_000  # stand-ins: _MARKER, _MARKER + 1, ... (values no query of ours uses)
    MAX_PLANS = 64  # per database (callers choose the ordering): all are dropped when full

    def __init__(self, queryset: Callable[[], QuerySet[M]]) -> None:
        self.queryset = queryset
        self._plans: dict[str, dict[tuple, _ListPlan | None]] = {}

    def narrowed(self, condition: Q, distinct: bool) -> Narrowed[M]:
        """What ``queryset().filter(condition)`` (``.distinct()``) gives, for a list page."""
        return Narrowed(self, condition, distinct, ())

    def _compile(
        self, connection: BaseDatabaseWrapper, shape: Shape, distinct: bool, order: tuple[str, ...]
    ) -> _ListPlan | None:
        size = _marker_count(shape)
        queryset = self.queryset().filter(_condition(shape, iter(range(self._MARKER, self._MARKER + size))))
        if distinct:
            queryset = queryset.distinct()
        try:
            count_sql, count_params = (
                queryset.order_by().values("pk").query.get_compiler(connection=connection).as_sql()
            )
            count_sql = f'SELECT COUNT(*) FROM ({count_sql}) "rows"'
            # The count as a column of every row of the page: one statement (one round trip) for both;
            # the databases evaluate an uncorrelated subquery once.
            total = RawSQL(count_sql, count_params, output_field=IntegerField())
            page = queryset.annotate(**{_TOTAL: total}).order_by(*order)
            compiler = page.query.get_compiler(connection=connection)
            sql, params = compiler.as_sql()
            keys = page_keys(queryset.order_by(*order)).query.get_compiler(connection=connection)
            keys_sql, keys_params = keys.as_sql()
            window = (self._MARKER + size, self._MARKER + size + 1)  # LIMIT and OFFSET
            page_window = RawSQL(f"{keys_sql} LIMIT %s OFFSET %s", (*keys_params, *window))
            deep = page.filter(pk__in=page_window).query.get_compiler(connection=connection)
            deep_sql, deep_params = deep.as_sql()
        except EmptyResultSet:
            return None
        slots, count_slots = _slots(params, self._MARKER, size), _slots(count_params, self._MARKER, size)
        deep_slots = _slots(deep_params, self._MARKER, size + 2)
        if slots is None or count_slots is None or deep_slots is None:
            return None
        instances = _instance_plan(compiler)
        return _ListPlan(
            sql=sql,
            params=list(params),
            slots=slots,
            total=instances["annotations"].pop(_TOTAL),
            count_sql=count_sql,
            count_params=list(count_params),
            count_slots=count_slots,
            deep_sql=deep_sql,
            deep_params=list(deep_params),
            deep_slots=deep_slots,
            **instances,
        )

    def plan(self, narrowed: Narrowed[M]) -> tuple[_ListPlan, list[int]] | None:
        """The compiled plan of ``narrowed`` and its condition's values; None: the ORM's way."""
        values: list[int] = []
        shape = _shape(narrowed.condition, values)
        if shape is None or not all(_INT64_MIN <= value <= _INT64_MAX for value in values):
            return None
        connection = connections[DEFAULT_DB_ALIAS]
        plans = self._plans.get(connection.alias)
        if plans is None:
            plans = self._plans[connection.alias] = {}
        key = (shape, narrowed.distinct, narrowed.order)
        if key not in plans:
            if len(plans) >= self.MAX_PLANS:
                plans.clear()
            plans[key] = self._compile(connection, shape, narrowed.distinct, narrowed.order)
        plan = plans[key]
        return None if plan is None else (plan, values)


def _marker_count(shape: Shape) -> int:
    counts = {"int": lambda _: 1, "ints": lambda part: part[2], "const": lambda _: 0, "q": _marker_count}
    return sum(counts[part[0]](part) for part in shape[3])


def _slots(params: Sequence, marker: int, size: int) -> list[tuple[int, int]] | None:
    """Where the stand-ins of the condition's values are among ``params``; None if one is missing."""
    slots = [
        (i, value - marker)
        for i, value in enumerate(params)
        if type(value) is int and 0 <= value - marker < size
    ]
    return slots if {index for _, index in slots} == set(range(size)) else None


def _bound(params: list, slots: list[tuple[int, int]], values: list[int]) -> list:
    params = list(params)
    for position, index in slots:
        params[position] = values[index]
    return params


class Narrowed(Generic[M]):
    """The rows of a ``CompiledList`` under a condition, for ``vantage6.api.pagination``: ``order_by``,
    a slice, iteration and ``count`` run compiled SQL; anything else is asked of the ORM's queryset."""

    def __init__(
        self, compiled: CompiledList[M], condition: Q, distinct: bool, order: tuple[str, ...]
    ) -> None:
        self.compiled, self.condition, self.distinct, self.order = compiled, condition, distinct, order
        self.total: int | None = None  # the number of all rows, once a page with rows was read

    @property
    def model(self) -> type[M]:
        return self.compiled.queryset().model

    def orm(self) -> QuerySet[M]:
        queryset = self.compiled.queryset().filter(self.condition)
        queryset = queryset.distinct() if self.distinct else queryset
        return queryset.order_by(*self.order) if self.order else queryset

    def __getattr__(self, name: str) -> object:
        return getattr(self.orm(), name)

    def order_by(self, *order: str) -> Narrowed[M]:
        return Narrowed(self.compiled, self.condition, self.distinct, order)

    def __getitem__(self, rows: slice) -> list[M]:
        assert (
            isinstance(rows, slice) and rows.step is None and rows.start is not None and rows.stop is not None
        )
        return self._rows(rows.start, rows.stop - rows.start)

    def __iter__(self) -> Iterator[M]:
        return iter(self._rows(0, None))

    def _rows(self, offset: int, limit: int | None) -> list[M]:
        planned = self.compiled.plan(self)
        if planned is None:
            orm = self.orm()
            return list(orm[offset : offset + limit] if limit is not None else orm[offset:])
        plan, values = planned
        connection = connections[DEFAULT_DB_ALIAS]
        if limit is not None and offset:
            sql, params = plan.deep_sql, _bound(plan.deep_params, plan.deep_slots, [*values, limit, offset])
        else:
            sql, params = plan.sql, _bound(plan.params, plan.slots, values)
            if limit is not None:
                sql, params = f"{sql} LIMIT %s OFFSET %s", [*params, limit, offset]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if rows:
            self.total = rows[0][plan.total]
        alias = connection.alias
        return [cast(M, _instance(plan, _converted(row, plan.converters, connection), alias)) for row in rows]

    def count(self) -> int:
        if self.total is not None:
            return self.total
        planned = self.compiled.plan(self)
        if planned is None:
            return self.orm().count()
        plan, values = planned
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute(plan.count_sql, _bound(plan.count_params, plan.count_slots, values))
            return cursor.fetchone()[0]
