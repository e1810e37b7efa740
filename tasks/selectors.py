"""Reads on tasks, runs and ports: visible, filtered querysets and the per-object view checks."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import NamedTuple, TypeVar, cast

from django.db import connection
from django.db.models import (
    BigIntegerField,
    Count,
    Exists,
    Expression,
    ExpressionWrapper,
    Func,
    Model,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    prefetch_related_objects,
)
from django.db.models.functions import Coalesce, Greatest
from django.db.models.lookups import GreaterThan

from accounts.catalogue import CONTAINER
from accounts.models import User
from accounts.permissions import (
    Principal,
    fetch,
    fetch_named,
    get_for,
    missing_to,
    role_rule_keys,
)
from collaborations.models import AlgorithmStore, Collaboration, Organization, Study
from nodes.models import Node, NodeConfig
from tasks.models import (
    OPEN_STATUSES,
    RUN_LARGE_FIELDS,
    AlgorithmPort,
    Blob,
    Run,
    Task,
    TaskDatabase,
    is_finished,
)
from vantage6.api.errors import bad_request
from vantage6.api.lookups import like_filtered
from vantage6.api.sql import CompiledList, CompiledRows, PkLookup
from vantage6.db.sizes import bytes_of

M = TypeVar("M", bound=Model)
TASK_INCLUDES = {"runs", "results"}


# The container's task as task creation needs it for a subtask (read with the token's check, not again).
_CONTAINER_TASK_FIELDS = ("status", "image", "job_id", "init_user_id", "algorithm_store_id")


def _container_state(
    task: int, collaboration: int, node: int, organization: int, generation: int
) -> QuerySet:
    # The node's logins have not all ended since (a new API key): a thief of its key or token loses the
    # containers' tokens it took too.
    node_there = Node.objects.filter(
        pk=node, collaboration_id=collaboration, organization_id=organization, token_generation=generation
    )
    member = Collaboration.organizations.through.objects.filter(
        collaboration_id=collaboration, organization_id=organization
    )
    # The container's own run: once it ended the container is gone, whatever the task's other runs do.
    running = Run.objects.filter(task_id=task, organization_id=organization, status__in=OPEN_STATUSES)
    return (
        Task.objects.filter(pk=task, collaboration_id=collaboration)
        .annotate(node_there=Exists(node_there), member=Exists(member), running=Exists(running))
        .annotate(rule_keys=role_rule_keys(CONTAINER))
        .values_list("node_there", "member", "running", "rule_keys", *_CONTAINER_TASK_FIELDS)[:1]
    )


# Checked on every request of a container: compiled once per connection.
_container_state_rows = CompiledRows(
    _container_state, "task", "collaboration", "node", "organization", "generation"
)


def container_task(identity: dict) -> Task | None:
    """The task of the container a token names if the container may still act, in one query: its task
    and its organization's run of it are unfinished, the task is in its collaboration, its node still
    exists there without having ended all its logins since, and its organization is still a member. The
    task has the fields a subtask takes from its parent and the container role's ``rule_keys``; None when
    it may not act."""
    try:
        task_id, collaboration_id = int(identity["task_id"]), int(identity["collaboration_id"])
        node_id, organization_id = int(identity["node_id"]), int(identity["organization_id"])
        generation = int(identity["node_generation"])
    except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: an infinite float
        return None
    found = _container_state_rows(
        task=task_id,
        collaboration=collaboration_id,
        node=node_id,
        organization=organization_id,
        generation=generation,
    )
    if not found or not all(found[0][:3]):
        return None
    fields = dict(zip(_CONTAINER_TASK_FIELDS, found[0][4:], strict=True))
    task = Task(pk=task_id, collaboration_id=collaboration_id, **fields)
    task._state.adding, task._state.db = False, connection.alias  # a stored row, read in part
    task.rule_keys = found[0][3]  # type: ignore[attr-defined]  # read by ``principal_for_container``
    return None if is_finished(task.status) else task


# One row by primary key, on every request of the detail endpoints: compiled once per connection.
_task = PkLookup(Task.objects.all)
_run_with_task = PkLookup(lambda: run_queryset())


def task_for_view(principal: Principal, pk: int | str, include: AbstractSet[str] = frozenset()) -> Task:
    """One task as ``GET /task/<id>`` returns it (401 without the rights, 404 when missing)."""
    task = get_for(principal, _task, pk, missing=f"Task id={pk} not found!")
    # Embedded runs show their input and log as GET /run does: judged by the run rules as results are.
    if include & TASK_INCLUDES:
        principal.require(principal.shows_embedded("task", "run", task))
        prefetch_related_objects([task], _runs_prefetch())
    attach_task_details([task], include)
    return task


def run_for_view(principal: Principal, pk: int | str, include_task: bool = False) -> Run:
    """One run as ``GET /run/<id>`` returns it: judged on its task by the run rules."""
    run = get_for(principal, _run_with_task, pk, None, missing=f"Run id={pk} not found!")
    principal.require(principal.allows("task_runs", run.task))
    if include_task:  # shown as GET /task shows it: judged by the task rules
        principal.require(principal.shows_embedded("run", "task", run))
    attach_run_details([run], include_task)
    return run


# --- querysets -----------------------------------------------------------------------------------------
def _runs_prefetch() -> Prefetch:
    return Prefetch("runs", queryset=Run.objects.select_related("task"))


def run_queryset() -> QuerySet[Run]:
    """Runs with their tasks."""
    return Run.objects.select_related("task")


# The pages of the lists, compiled once per shape of the caller's scope.
_tasks = CompiledList(Task.objects.all)
_runs, _runs_with_task = CompiledList(Run.objects.all), CompiledList(run_queryset)


# --- what a page shows beside its rows -------------------------------------------------------------------
# The databases of tasks, the ports and nodes of runs: read with SQL written here, one query each per
# page. Django's prefetching builds a query and a queryset per row (more CPU than the query itself).
_DATABASES = (
    'SELECT "task_id", "database", "parameters" FROM "taskdatabase" WHERE "task_id" IN ({}) ORDER BY "id"'
)
_PORTS = 'SELECT "run_id", "id", "port", "label" FROM "algorithmport" WHERE "run_id" IN ({}) ORDER BY "id"'
_NODES = (
    'SELECT n."organization_id", n."collaboration_id", n."authenticatable_ptr_id", a."ip", a."status",'
    ' n."name" FROM "node" n INNER JOIN "authenticatable" a ON a."id" = n."authenticatable_ptr_id"'
    ' WHERE n."organization_id" IN ({}) AND n."collaboration_id" IN ({})'
)


def _rows(sql: str, *keys: Collection[int]) -> list[tuple]:
    """The rows of ``sql``, each of its ``{}`` (an ``IN`` list) filled with one collection of ``keys``."""
    lists = [sorted(group) for group in keys]
    placeholders = (", ".join(["%s"] * len(values)) for values in lists)
    with connection.cursor() as cursor:
        cursor.execute(sql.format(*placeholders), [value for values in lists for value in values])
        return cursor.fetchall()


def attach_task_details(tasks: Sequence[Task], include: AbstractSet[str] = frozenset()) -> None:
    """Set what a task representation shows beside its row: ``database_entries``, and the details of
    its runs when ``include`` embeds them (the runs must be prefetched)."""
    if not tasks:
        return
    entries: dict[int, list[dict]] = {task.pk: [] for task in tasks}
    for task_id, database, parameters in _rows(_DATABASES, entries):
        entries[task_id].append({"label": database, "parameters": parameters})
    for task in tasks:
        task.database_entries = entries[task.pk]  # type: ignore[attr-defined]  # read by TaskOutput
    if include & TASK_INCLUDES:
        attach_run_details([run for task in tasks for run in task.runs.all()])


def attach_run_details(runs: Sequence[Run], include_task: bool = False) -> None:
    """Set what a run representation shows beside its row: ``port_entries`` and ``node_info``, and the
    details of the tasks when they are embedded. The runs' tasks must be loaded."""
    if not runs:
        return
    ports: dict[int, list[dict]] = {run.pk: [] for run in runs}
    for run_id, pk, port, label in _rows(_PORTS, ports):
        ports[run_id].append({"id": pk, "port": port, "label": label})
    for run in runs:
        run.port_entries = ports[run.pk]  # type: ignore[attr-defined]  # read by RunOutput
    attach_nodes(runs)
    if include_task:
        attach_task_details([run.task for run in runs])


def node_info(node: Node) -> dict:
    """The node as a run representation shows it (as ``attach_nodes`` sets it)."""
    return {"id": node.pk, "ip": node.ip, "status": node.status, "name": node.name}


def attach_nodes(runs: Iterable[Run]) -> None:
    """Set ``run.node_info`` (the node of the run's organization in its task's collaboration).

    One query for all runs; their tasks must be loaded.
    """
    runs = list(runs)
    if not runs:
        return
    orgs = {run.organization_id for run in runs}
    collabs = {run.task.collaboration_id for run in runs}
    nodes: dict[tuple[int, int], dict] = {}
    for organization_id, collaboration_id, pk, ip, status, name in _rows(_NODES, orgs, collabs):
        nodes[organization_id, collaboration_id] = {"id": pk, "ip": ip, "status": status, "name": name}
    for run in runs:
        run.node_info = nodes.get((run.organization_id, run.task.collaboration_id))  # type: ignore[attr-defined]  # read by RunOutput


# --- list filters ---------------------------------------------------------------------------------------
def _named(principal: Principal, queryset: QuerySet[M], pk: int, label: str, listed: str = "task") -> M:
    """The row a filter of the ``listed`` resource names, whose reach the filter checks: when there is
    none, a 400 to who views every row listed, to anyone else the 401 of a row out of reach."""
    missing = missing_to(principal, listed, bad_request(f"{label} id={pk} does not exist!"))
    return fetch(queryset, pk, missing=missing)


# Filters naming a row: the tasks of its collaboration are only for who may view tasks there.
_TASKS_OF_COLLABORATION = {
    "study_id": (Study.objects.all(), "Study", "study_id"),
    "parent_id": (Task.objects.all(), "Task", "parent_id"),
}


def task_list(principal: Principal, filters: dict, include: AbstractSet[str] = frozenset()) -> QuerySet[Task]:
    # Embedded runs or results: judged by the run rules.
    tasks = principal.visible("task", _tasks, with_embedded="run" if include & TASK_INCLUDES else None)

    tasks = principal.filtered(tasks, "task", filters, "collaboration_id")
    if (init_org_id := filters.get("init_org_id")) is not None:
        principal.require(principal.reaches("task", "view", organization_id=init_org_id))
        tasks = tasks.filter(init_org_id=init_org_id)
    if (init_user_id := filters.get("init_user_id")) is not None:
        user = _named(principal, User.objects.all(), init_user_id, "User")
        principal.require(
            principal.reaches("task", "view", organization_id=user.organization_id, owner_id=user.pk)
        )
        tasks = tasks.filter(init_user_id=init_user_id)
    for name, (queryset, label, lookup) in _TASKS_OF_COLLABORATION.items():
        if (pk := filters.get(name)) is not None:
            row = cast(Study | Task, _named(principal, queryset, pk, label))
            principal.require(principal.reaches("task", "view", collaboration_id=row.collaboration_id))
            tasks = tasks.filter(**{lookup: pk})
    if (job_id := filters.get("job_id")) is not None:
        job_task = Task.objects.filter(job_id=job_id).order_by("id").first()
        if job_task is None:
            raise missing_to(principal, "task", bad_request(f"Job id={job_id} does not exist!"))
        principal.require(principal.reaches("task", "view", collaboration_id=job_task.collaboration_id))
        tasks = tasks.filter(job_id=job_id)
    tasks = like_filtered(tasks, filters, "name", "image", "description")
    if database := filters.get("database"):
        tasks = tasks.filter(pk__in=TaskDatabase.objects.filter(database=database).values("task_id"))
    if (is_user_created := filters.get("is_user_created")) is not None:
        tasks = tasks.filter(parent__isnull=bool(is_user_created))
    if (store_id := filters.get("store_id")) is not None:
        # no reach checked below: a store of a collaboration is for who views its tasks
        missing = bad_request(f"Algorithm store id={store_id} does not exist!")
        fetch_named(
            principal, AlgorithmStore.objects.all(), store_id, missing=missing, listed="task",
            reach=lambda store: store.collaboration_id is None
            or principal.reaches("task", "view", collaboration_id=store.collaboration_id),
        )  # fmt: skip
        tasks = tasks.filter(algorithm_store_id=store_id)
    if (run_id := filters.get("run_id")) is not None:
        run = _named(principal, Run.objects.select_related("task"), run_id, "Run")
        principal.require(principal.reaches("task", "view", collaboration_id=run.task.collaboration_id))
        tasks = tasks.filter(pk=run.task_id)
    if status := filters.get("status"):
        tasks = tasks.filter(status=status)
    if include & TASK_INCLUDES:
        tasks = tasks.prefetch_related(_runs_prefetch())
    return tasks


_PERIOD_FILTERS = {
    f"{field}_{side}": (f"{field}_at__{lookup}")
    for field in ("assigned", "started", "finished")
    for side, lookup in (("from", "gte"), ("till", "lte"))
}


def run_list(
    principal: Principal, filters: dict, *, with_task: bool = False, embed_task: bool = False
) -> QuerySet[Run]:
    """The runs (or results) the principal may see, filtered as ``GET /run`` and ``GET /result`` do;
    ``with_task``: each with its task loaded; ``embed_task``: and shown (``include=task``), which the
    task rules must reach as far as the run rules do."""
    embedded = "task" if embed_task else None
    runs = principal.visible("run", _runs_with_task if with_task else _runs, with_embedded=embedded)

    if (task_id := filters.get("task_id")) is not None:
        task = _named(principal, Task.objects.all(), task_id, "Task", "run")
        principal.require(principal.allows("task_runs", task))
        runs = runs.filter(task_id=task_id)
    runs = principal.filtered(runs, "run", filters, "organization_id")
    if (node_id := filters.get("node_id")) is not None:
        node = _named(principal, Node.objects.all(), node_id, "Node", "run")
        principal.require(principal.reaches("run", "view", collaboration_id=node.collaboration_id))
        runs = runs.filter(organization_id=node.organization_id, task__collaboration_id=node.collaboration_id)
    runs = principal.filtered(runs, "run", filters, "collaboration_id", "task__collaboration_id")
    if filters.get("state") == "open":
        runs = runs.filter(finished_at__isnull=True)
    for name, lookup in _PERIOD_FILTERS.items():
        if (moment := filters.get(name)) is not None:
            runs = runs.filter(**{lookup: moment})
    if (port := filters.get("port")) is not None:
        runs = runs.filter(pk__in=AlgorithmPort.objects.filter(port=port).values("run_id"))
    return runs


ONLY_FLAGS = ("only_children", "only_parent", "only_siblings", "only_self")


def algorithm_addresses(principal: Principal, filters: dict) -> list[dict]:
    """VPN addresses of the runs around a container's own task (``/vpn/algorithm/addresses``)."""
    only = [name for name in ONLY_FLAGS if filters.get(name)]
    if len(only) > 1:
        raise bad_request(f"Use at most one of {', '.join(ONLY_FLAGS)}")
    task = Task.objects.filter(pk=cast(int, principal.claims.get("task_id"))).first()
    if task is None:
        return []
    own = Q(run__task_id=task.pk)
    children = Q(run__task__parent_id=task.pk)
    parent = Q(run__task_id=task.parent_id) if task.parent_id else Q(pk__in=[])
    mine = Q(run__organization_id=principal.organization_id)
    selection = {
        "only_children": children,
        "only_parent": parent,
        "only_siblings": own & ~mine,
        "only_self": own & mine,
    }.get(only[0] if only else "")
    if selection is None:
        selection = own
        if filters.get("include_children"):
            selection |= children
        if filters.get("include_parent"):
            selection |= parent
    ports = AlgorithmPort.objects.filter(selection).select_related("run__task").order_by("id")
    if label := filters.get("label"):
        ports = ports.filter(label=label)
    rows = list(ports)
    attach_nodes(port.run for port in rows)
    return [
        {
            "port": port.port,
            "label": port.label,
            "ip": (port.run.node_info or {}).get("ip"),  # type: ignore[attr-defined]
            "organization_id": port.run.organization_id,
            "task_id": port.run.task_id,
            "parent_id": port.run.task.parent_id,
        }
        for port in rows
    ]


def column_names(collaboration_id: int, db_label: str) -> list[str] | None:
    """The columns of database ``db_label`` as the first node of the collaboration that shared them."""
    rows = list(
        NodeConfig.objects.filter(node__collaboration_id=collaboration_id, key=f"columns_{db_label}")
        .order_by("node_id", "id")
        .values_list("node_id", "value")
    )
    if not rows:
        return None
    first = rows[0][0]
    return [value for node_id, value in rows if node_id == first]


def task_bytes(include: AbstractSet[str]) -> Expression | None:
    """The bytes of the large fields a task's row shows with ``include`` (its runs, its results)."""
    fields = (RUN_LARGE_FIELDS if "runs" in include else ()) + (("result",) if "results" in include else ())
    if not fields:
        return None
    per_task = (
        Run.objects.filter(task=OuterRef("pk"))
        .order_by()
        .values("task")
        .annotate(total=Sum(bytes_of(*fields)))
    )
    return Coalesce(Subquery(per_task.values("total"), output_field=BigIntegerField()), 0)


def tasks_with_large_runs(include: AbstractSet[str], threshold: int) -> Q:
    """The tasks that may show more than ``threshold`` bytes with ``include`` (``task_bytes``), found
    through the runs' indexes on their bytes: a task has a run per organization at most, so one of those
    shows more than its share of ``threshold``; a run shows its result once more with both included.
    The organizations are counted inside the statement: no round trip of its own."""
    organizations = Organization.objects.order_by().values(n=Func(Value(1), function="COUNT"))
    shares: Expression = Greatest(Subquery(organizations, output_field=BigIntegerField()), 1)
    fields: tuple[str, ...] = ("result",)
    if "runs" in include:
        fields, shares = RUN_LARGE_FIELDS, shares * 2 if "results" in include else shares
    share = ExpressionWrapper(Value(threshold) / shares, output_field=BigIntegerField())
    return Q(pk__in=Run.objects.filter(GreaterThan(bytes_of(*fields), share)).values("task_id"))


class BlobNaming(NamedTuple):
    """What ``Principal.reads_blob`` judges a blob by (its arguments, in order)."""

    uploader_organization_id: int | None  # None: no such upload
    named: bool  # a run names it (as its input or result)
    named_in_view: bool  # a run the principal views (``task_runs`` of its task) names it

    @property
    def exists(self) -> bool:
        return self.named or self.uploader_organization_id is not None


def blob_readers(principal: Principal, names: Collection[str]) -> dict[str, BlobNaming]:
    """``BlobNaming`` of each blob of ``names``, for ``principal``: one aggregate over the runs that name
    them (no row loaded), and a lookup of the uploads no run names."""
    names = list(dict.fromkeys(names))
    if not names:
        return {}
    # The runs of a task the principal views runs of: the engine's definition, on the run's own task.
    in_view = Exists(principal.visible_or_none("task_runs", Task.objects.filter(pk=OuterRef("task_id"))))
    naming = [Q(input=name) | Q(result=name) for name in names]
    counts = (
        Run.objects.filter(Q(input__in=names) | Q(result__in=names), blob_storage_used=True)
        .order_by()
        .aggregate(
            **{f"named_{index}": Count("pk", filter=q) for index, q in enumerate(naming)},
            **{f"in_view_{index}": Count("pk", filter=q & Q(in_view)) for index, q in enumerate(naming)},
        )
    )
    named = {name for index, name in enumerate(names) if counts[f"named_{index}"]}
    in_view_names = {name for index, name in enumerate(names) if counts[f"in_view_{index}"]}
    # The uploader counts only while no run names a blob.
    unnamed = Blob.objects.filter(name__in=[name for name in names if name not in named])
    uploaders = dict(unnamed.values_list("name", "organization_id")) if len(named) < len(names) else {}
    return {name: BlobNaming(uploaders.get(name), name in named, name in in_view_names) for name in names}
