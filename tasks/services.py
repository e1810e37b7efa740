"""Writes on tasks and runs: creation (by users and algorithm containers), kills, deletes, run updates."""

from __future__ import annotations

import base64
import binascii
import errno
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import (
    Case,
    CharField,
    Exists,
    F,
    Model,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    TextField,
    Value,
    When,
)
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.audit import Actor, audit, audit_children, audit_if_changed, audit_queried, audited_insert
from accounts.authentication import CONTAINER_TOKEN_ENDED, DeferredCaller
from accounts.models import User
from accounts.permissions import (
    Principal,
    fetch_in_collaboration,
    fetch_named,
    judged_named,
    missing_to,
    reaches_every_sql,
)
from accounts.tokens import container_token
from collaborations.models import AlgorithmStore, Collaboration, Study
from collaborations.store_client import algorithm_digest, this_server_url, user_authorization
from nodes.events import collaboration_room, emit
from nodes.models import Node, NodeConfig
from tasks import blobs, selectors
from tasks.models import (
    OPEN_STATUSES,
    AlgorithmPort,
    PeriodicJob,
    Run,
    Task,
    TaskDatabase,
    TaskStatus,
    is_finished,
    task_status,
)
from tasks.selectors import container_task
from tasks.serializers import database_parameters
from vantage6.api.errors import ApiError, bad_request, not_found
from vantage6.api.sql import (
    CompiledInsert,
    CompiledInsertIf,
    CompiledRows,
    CompiledUpdate,
    CorrelatedSQL,
    PkLookup,
    Statement,
    joined,
)
from vantage6.db import features, operations

logger = logging.getLogger(__name__)

CONTAINER_TOKEN_INVALID = "Container-token is not valid"


# --- task creation -------------------------------------------------------------------------------------
def _collaboration_and_study(principal: Principal, data: dict) -> tuple[Collaboration, Study | None]:
    # Fetched as named to create a task there (``Principal.names_collaboration``): task_create judges the
    # caller on the collaboration afterwards. A study counts as named with its collaboration (a task may
    # go to a study without the caller's organization).
    study = None
    if study_id := data.get("study_id"):
        study = fetch_in_collaboration(
            principal, Study.objects.select_related("collaboration"), study_id, resource="task",
            operation="create", missing=f"Study id={study_id} not found!", collaboration="collaboration_id",
        )  # fmt: skip
    collaboration_id = data.get("collaboration_id") or study.collaboration_id  # type: ignore[union-attr]
    collaboration = fetch_in_collaboration(
        principal, _collaboration_with_members, collaboration_id, resource="task", operation="create",
        missing=f"Collaboration id={collaboration_id} not found!",
    )  # fmt: skip
    if study is not None and study.collaboration_id != collaboration.pk:
        raise bad_request(f"Study id={study.pk} is not part of collaboration id={collaboration.pk}!")
    return collaboration, study


def _check_members(
    collaboration: Collaboration, study: Study | None, org_ids: list[int], members: set[int]
) -> None:
    if missing := sorted(set(org_ids) - members):
        raise bad_request(f"Organization(s) {missing} are not part of collaboration id={collaboration.pk}!")
    if study is not None:
        study_members = set(study.organizations.values_list("id", flat=True))
        if missing := sorted(set(org_ids) - study_members):
            raise bad_request(f"Organization(s) {missing} are not part of study id={study.pk}!")


def _ids(collaboration: Collaboration, annotation: str) -> set[int]:
    """The ids of an annotation of ``_collaboration_with_members`` (joined by commas)."""
    return {int(pk) for pk in (getattr(collaboration, annotation) or "").split(",") if pk}


def _members(collaboration: Collaboration) -> set[int]:
    """The member organizations of a collaboration loaded as ``_collaboration_with_members``."""
    return _ids(collaboration, "member_ids")


def _check_creator_member(principal: Principal, members: set[int]) -> None:
    principal.require(
        principal.organization_id in members,
        "You can only create tasks in collaborations your organization is part of",
    )


def _still_members(collaboration_id: int, org_ids: list[int]) -> tuple[str, list]:
    """SQL that holds while every one of ``org_ids`` is a member of the collaboration (so while it exists)."""
    through = Collaboration.organizations.through
    quote = connection.ops.quote_name
    distinct = sorted(set(org_ids))
    places = ", ".join(["%s"] * len(distinct))
    sql = (
        f"(SELECT count(*) FROM {quote(through._meta.db_table)}"
        f" WHERE {quote(through._meta.get_field('collaboration').column)} = %s"
        f" AND {quote(through._meta.get_field('organization').column)} IN ({places})"
        ") = %s"
    )
    return sql, [collaboration_id, *distinct, len(distinct)]


def _still_running(task_id: int, organization_id: int) -> tuple[str, list]:
    """SQL that holds while the task exists and is unfinished, and so is the run of ``organization_id``
    (the parent of a container's subtask, and the container's own run)."""
    places = ", ".join(["%s"] * len(OPEN_STATUSES))
    tasks, runs = (connection.ops.quote_name(model._meta.db_table) for model in (Task, Run))
    return (
        f"EXISTS (SELECT 1 FROM {tasks} WHERE id = %s AND status IN ({places})) AND EXISTS (SELECT 1 FROM "
        f"{runs} WHERE task_id = %s AND organization_id = %s AND status IN ({places}))",
        [task_id, *OPEN_STATUSES, task_id, organization_id, *OPEN_STATUSES],
    )


def _with_nodes(collaboration_id: int, org_ids: list[int]) -> tuple[str, list]:
    """SQL that holds while each of ``org_ids`` has its node in the collaboration (``_check_nodes``)."""
    quote = connection.ops.quote_name
    distinct = sorted(set(org_ids))
    organization = quote(Node._meta.get_field("organization").column)
    sql = (
        f"(SELECT count(DISTINCT {organization}) FROM {quote(Node._meta.db_table)}"
        f" WHERE {quote(Node._meta.get_field('collaboration').column)} = %s"
        f" AND {organization} IN ({', '.join(['%s'] * len(distinct))})) = %s"
    )
    return sql, [collaboration_id, *distinct, len(distinct)]


def _without_policies(collaboration_id: int, org_ids: list[int]) -> tuple[str, list]:
    """SQL that holds while no node of ``org_ids`` in the collaboration has a policy: a subtask to one
    is judged by ``_check_node_policies``."""
    quote = connection.ops.quote_name
    distinct = sorted(set(org_ids))
    node, places = quote(Node._meta.db_table), ", ".join(["%s"] * len(distinct))
    sql = (
        f"NOT EXISTS (SELECT 1 FROM {quote(NodeConfig._meta.db_table)} c INNER JOIN {node} n"
        f" ON n.{quote(Node._meta.get_field('authenticatable_ptr').column)}"
        f" = c.{quote(NodeConfig.node.field.column)}"
        f" WHERE n.{quote(Node._meta.get_field('collaboration').column)} = %s"
        f" AND n.{quote(Node._meta.get_field('organization').column)} IN ({places})"
        f" AND c.{quote('key')} IN (%s, %s))"
    )
    return sql, [collaboration_id, *distinct, *_POLICY_KEYS]


def _encrypted(collaboration_id: int, encrypted: bool) -> tuple[str, list]:
    """SQL that holds while the collaboration's ``encrypted`` is this (``_check_inputs``)."""
    quote = connection.ops.quote_name
    return (
        f"EXISTS (SELECT 1 FROM {quote(Collaboration._meta.db_table)} WHERE {quote('id')} = %s"
        f" AND {quote('encrypted')} = %s)",
        [collaboration_id, encrypted],
    )


def _all_of(*conditions: tuple[str, list]) -> tuple[str, list]:
    return " AND ".join(f"({sql})" for sql, _ in conditions), [p for _, params in conditions for p in params]


def _membership_changed(principal: Principal, collaboration: Collaboration, org_ids: list[int]) -> ApiError:
    """The answer to a task whose collaboration or memberships changed after its checks: as the
    checks answer now."""
    current = _collaboration_with_members(collaboration.pk)
    if current is None:
        return not_found(f"Collaboration id={collaboration.pk} not found!")
    members = _members(current)
    _check_members(current, None, org_ids, members)
    _check_creator_member(principal, members)
    return ApiError(409, "The collaboration's members changed while the task was created; try again")


_POLICY_KEYS = ("allowed_users", "allowed_orgs")


def _policies_sql(connection: BaseDatabaseWrapper) -> tuple[str, tuple]:
    """The node's ``allowed_users``/``allowed_orgs`` rows as one JSON array of ``[key, value]``."""
    q = connection.ops.quote_name
    where = f"c.{q(NodeConfig.node.field.column)} = {{outer}} AND c.{q('key')} IN (%s, %s)"
    sql = operations(connection).json_rows_sql(NodeConfig._meta.db_table, "c", ["key", "value"], where)
    return sql, _POLICY_KEYS


def _check_nodes(collaboration: Collaboration, org_ids: list[int]) -> None:
    """Every one of these organizations has its node in the collaboration (loaded as
    ``_collaboration_with_members``: no statement of its own)."""
    if missing := sorted(set(org_ids) - _ids(collaboration, "node_org_ids")):
        raise bad_request(
            "Cannot create this task because there are no nodes for the following organization(s) "
            f"in collaboration id={collaboration.pk}: {missing}"
        )


def _target_nodes(collaboration: Collaboration, org_ids: list[int]) -> list[Node]:
    """The nodes of these organizations in the collaboration, with their policies (``policy_rows``)."""
    policies = CorrelatedSQL(_policies_sql, output_field=TextField())
    return list(
        Node.objects.filter(collaboration=collaboration, organization_id__in=org_ids).annotate(
            policy_rows=policies
        )
    )


def _job_user(principal: Principal) -> User | None:
    """The user a task is made for: the caller, or the user of a container's job (its subtasks go out in
    that user's name); None when that user is gone."""
    if principal.is_user:
        return principal.user
    return User.objects.select_related("organization").filter(pk=principal.task.init_user_id).first()


def _check_node_policies(user: User | None, nodes: list[Node]) -> None:
    """Nodes that shared ``allowed_users``/``allowed_orgs`` only take tasks from those users/orgs, also
    as subtasks of their jobs (read only when a target's node has a policy: ``policy_org_ids``)."""
    policies: dict[int, dict[str, set[str]]] = {}
    for node in nodes:
        for key, value in json.loads(getattr(node, "policy_rows") or "[]"):  # noqa: B009 - an annotation
            policies.setdefault(node.pk, {name: set() for name in _POLICY_KEYS})[key].add(value.strip())
    if not policies:
        return
    me = {str(user.pk), user.username} if user else set()
    my_org = {str(user.organization_id), user.organization.name} if user else set()
    for node in nodes:
        policy = policies.get(node.pk)
        if policy and not (policy["allowed_users"] & me or policy["allowed_orgs"] & my_org):
            name = user.username if user else None
            raise bad_request(
                f"Node '{node.name}' does not allow tasks from user '{name}' or its organization"
            )


# A task by primary key, compiled once per connection (a task to kill).
_task_by_pk = PkLookup(lambda: Task.objects.all())
# A collaboration with the ids of its organizations (``member_ids``), of the organizations with a node in
# it (``node_org_ids``) and of those whose node has a policy (``policy_org_ids``, once per policy row),
# each joined by commas, in one query.
_collaboration_with_members = PkLookup(
    lambda: Collaboration.objects.annotate(
        member_ids=joined(
            Collaboration.organizations.through.objects.filter(collaboration_id=OuterRef("pk")),
            Cast("organization_id", CharField()),
        ),
        node_org_ids=joined(
            Node.objects.filter(collaboration_id=OuterRef("pk")), Cast("organization_id", CharField())
        ),
        policy_org_ids=joined(
            NodeConfig.objects.filter(node__collaboration_id=OuterRef("pk"), key__in=_POLICY_KEYS),
            Cast("node__organization_id", CharField()),
        ),
    )
)


def _all_fields(model: type[Model]) -> list[str]:
    return [field.name for field in model._meta.concrete_fields if not field.primary_key]


# The rows of a new task, written by SQL built once (all fields: the model's defaults apply as in create()).
_insert_task = CompiledInsert(Task, _all_fields(Task))
_insert_databases = CompiledInsert(TaskDatabase, _all_fields(TaskDatabase))
_insert_runs = CompiledInsert(Run, _all_fields(Run))


def _token_creates(principal: Principal, collaboration_id: int, image: str) -> bool:
    """Whether a container's token may create a subtask of ``image`` in the collaboration: its task still
    runs, in that collaboration, with that image."""
    parent = principal.task
    return (
        parent is not None
        and image.endswith(str(principal.claims.get("image")))
        and not is_finished(parent.status)
        and principal.claims.get("collaboration_id") == collaboration_id
    )


def _check_container(
    principal: Principal, collaboration: Collaboration, study: Study | None, image: str
) -> Task:
    """The parent task of a container's subtask (the container's task, as its token's check read it in
    this request); 401 unless the token may create it, 400 outside the study of its task."""
    claims = principal.claims
    parent = principal.task
    principal.require(_token_creates(principal, collaboration.pk, image), CONTAINER_TOKEN_INVALID)
    # A study bounds whom its task's algorithm reaches: it names no other study.
    if (parent_study := claims.get("study_id")) and (study is None or study.pk != parent_study):
        raise bad_request(f"A subtask stays in the study of its task (id={parent_study})!")
    return cast(Task, parent)


def _image_and_store(
    principal: Principal, data: dict, collaboration: Collaboration, authorization: str | None
) -> tuple[str, int | None]:
    """The image to run and the store it comes from; pinned to the store's digest when it has one."""
    image = data["image"]
    store_id = data.get("store_id")
    if not store_id:
        return image, None
    missing = bad_request(f"Algorithm store id={store_id} does not exist!")
    store = fetch_named(principal, AlgorithmStore.objects.all(), store_id, missing=missing)
    if store.collaboration_id not in (None, collaboration.pk):
        raise ApiError(
            403, f"Algorithm store id={store_id} is not part of collaboration id={collaboration.pk}!"
        )
    digest = algorithm_digest(
        store_url=store.url,
        image=image,
        server_url=this_server_url(data.get("server_url")),
        authorization=user_authorization(store, authorization),
        caller=principal,
    )
    if digest is None:
        return image, None
    return (image if "@" in image else f"{image}@{digest}"), store.pk


def _readable(value: str) -> bool:
    """Whether an input is plain base64 of UTF-8 text (not encrypted)."""
    try:
        base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    return True


def _check_inputs(collaboration: Collaboration, organizations: list[dict], blob_store: bool) -> None:
    for entry in organizations:
        value = entry["input"]
        if blob_store:
            if not blobs.is_blob_id(value):
                raise bad_request(
                    f"Input for organization id={entry['id']} must be the UUID of an uploaded blob"
                )
        elif collaboration.encrypted and _readable(value):
            raise bad_request(
                f"Your collaboration requires encryption, but the input for organization id={entry['id']} "
                "is not encrypted!"
            )
        elif not collaboration.encrypted and not _readable(value):
            raise bad_request(
                f"Your collaboration does not use encryption, but the input for organization "
                f"id={entry['id']} is not readable (it should be base64-encoded text)!"
            )


def _require_readable_blobs(principal: Principal, named: list[tuple[str, str]]) -> None:
    """A 400 unless the principal may read each blob named (``Principal.reads_blob``; (what names it, its
    name) pairs), the same for a blob out of reach as for none: a run naming it shows it to all who view
    the run, and keeps it from its owner's deletion."""
    readers = selectors.blob_readers(principal, {name for _, name in named})
    for what, name in named:
        if not principal.reads_blob(*readers[name]):
            raise bad_request(
                f"{what} names no blob you uploaded or may read; upload it to /api/blobstream first"
            )


def task_create(*, principal: Principal, data: dict, authorization: str | None = None) -> Task:
    """Create a task, its database entries and one run per organization (POST /task checks, in order).

    The checks read outside a transaction: at READ COMMITTED (PostgreSQL's, ours) one around them would
    hold none of the rows they read, and on SQLite it would hold the database's one write lock, for every
    writer of the deployment, while the algorithm store is asked (as long as the store takes). The rows
    are written in one transaction (on PostgreSQL one statement), only while the memberships the checks
    saw still hold."""
    if principal.is_container and not data.get("study_id"):
        # A subtask of a task in a study is in that study (algorithms built before studies name none).
        data = {**data, "study_id": principal.claims.get("study_id")}
        if (task := _subtask_checked_by_its_write(principal, data)) is not None:
            return task
    collaboration, study = _collaboration_and_study(principal, data)
    org_ids = [entry["id"] for entry in data["organizations"]]
    members = _members(collaboration)
    _check_members(collaboration, study, org_ids, members)
    _check_nodes(collaboration, org_ids)
    if _ids(collaboration, "policy_org_ids") & set(org_ids):
        _check_node_policies(_job_user(principal), _target_nodes(collaboration, org_ids))
    _check_creator_member(principal, members)
    parent = None
    if principal.is_container:
        parent = _check_container(principal, collaboration, study, data["image"])
        image, store_id = parent.image, parent.algorithm_store_id
    else:
        principal.require(principal.reaches("task", "create", collaboration_id=collaboration.pk))
        image, store_id = _image_and_store(principal, data, collaboration, authorization)
    blob_store = blobs.blob_storage() is not None
    _check_inputs(collaboration, data["organizations"], blob_store)
    if blob_store:
        _require_readable_blobs(
            principal,
            [(f"Input for organization id={entry['id']}", entry["input"]) for entry in data["organizations"]],
        )
    # The checks above read outside the statement: it writes only while they still hold.
    task = _write_task(
        principal, data, collaboration.pk, study, parent, image, store_id, blob_store,
        _still_members(collaboration.pk, [*org_ids, principal.organization_id]),
    )  # fmt: skip
    if task is None:
        if parent and container_task(principal.claims) is None:
            raise ApiError(401, CONTAINER_TOKEN_ENDED)  # its task or run ended since its token's check
        raise _membership_changed(principal, collaboration, org_ids)
    return task


def _subtask_checked_by_its_write(principal: Principal, data: dict) -> Task | None:
    """A container's subtask outside a study, without a read of its collaboration first: the checks of
    ``task_create`` on the collaboration (its members, their nodes and policies, its encryption) are
    conditions of the write's own statement, the others those of the token (``_check_container``) and
    the caller's rules.
    None, and nothing written, when a check does not hold or needs what the statement cannot check (a
    blob store, inputs both readable and not): the request then takes ``task_create``'s way and its answer."""
    parent = principal.task
    collaboration_id = data.get("collaboration_id")
    if (
        data.get("study_id")
        or collaboration_id is None
        or not _token_creates(principal, collaboration_id, data["image"])
        # the judgement of ``_collaboration_and_study``, without the row: the statement checks it exists
        or not principal.names_collaboration(collaboration_id, "task", "create")
        or blobs.blob_storage() is not None
    ):
        return None
    readable = {_readable(entry["input"]) for entry in data["organizations"]}
    if len(readable) != 1:
        return None
    org_ids = [entry["id"] for entry in data["organizations"]]
    return _write_task(
        principal, data, collaboration_id, None, parent, parent.image, parent.algorithm_store_id, False,
        _still_members(collaboration_id, [*org_ids, principal.organization_id]),
        _with_nodes(collaboration_id, org_ids),
        _without_policies(collaboration_id, org_ids),
        _encrypted(collaboration_id, not readable.pop()),
    )  # fmt: skip


def _write_task(
    principal: Principal,
    data: dict,
    collaboration_id: int,
    study: Study | None,
    parent: Task | None,
    image: str,
    store_id: int | None,
    blob_store: bool,
    *conditions: tuple[str, list],
) -> Task | None:
    """The rows of a task that passed its checks, in one statement (``with_children``) written only while
    ``conditions`` hold (and, for a subtask, its parent and the container's run still run); its event.
    None, and nothing written, when they do not."""
    now = timezone.now()
    values = {
        "name": data.get("name") or "",
        "description": data.get("description") or "",
        "image": image,
        "collaboration_id": collaboration_id,
        "study": study,
        "job_id": parent.job_id if parent else 0,
        "parent": parent,
        "init_org_id": principal.organization_id,
        "init_user_id": parent.init_user_id if parent else principal.id,
        "algorithm_store_id": store_id,
        "status": TaskStatus.PENDING,  # as all its runs
    }
    # Its databases, its runs and the audit record refer to it; nothing reads them back in this request.
    databases = [
        {"database": entry["label"], "parameters": database_parameters(entry)}
        for entry in data.get("databases") or []
    ]
    runs = [
        {
            "organization_id": entry["id"],
            "input": entry["input"],
            "assigned_at": now,
            "status": TaskStatus.PENDING,
            "blob_storage_used": blob_store,
        }
        for entry in data["organizations"]
    ]
    created = _insert_task.with_children(
        values,
        [
            (_insert_databases, "task", lambda task: [{"task": task, **row} for row in databases]),
            (_insert_runs, "task", lambda task: [{"task": task, **row} for row in runs]),
            audit_children(principal, "task.create"),
        ],
        # A top-level task starts a new job; its own id is unique and above every earlier job id.
        own=[] if parent else ["job_id"],
        condition=_all_of(
            *conditions, *([_still_running(parent.pk, principal.organization_id)] if parent else [])
        ),
    )
    if created is None:
        return None
    task, (written, _, _) = created
    _known_databases(task, cast(list[TaskDatabase], written))
    emit("new_task", {"id": task.pk, "parent_id": task.parent_id}, room=collaboration_room(collaboration_id))
    return task


def _known_databases(task: Task, databases: list[TaskDatabase]) -> None:
    """``task.databases.all()`` gives ``databases`` (as written, in id order) without a query, as if
    prefetched: the answer to the creation shows them."""
    _known_related(task, "databases", databases)


def _known_related(obj: Any, name: str, objects: list) -> None:
    """``obj.<name>.all()`` (a reverse foreign key) gives ``objects`` without a query, as if prefetched."""
    queryset = getattr(obj, name).all()  # filled in as Django's prefetching fills it
    queryset._result_cache = objects
    queryset._prefetch_done = True
    obj._prefetched_objects_cache = {**getattr(obj, "_prefetched_objects_cache", {}), name: queryset}


# --- kill and delete -----------------------------------------------------------------------------------
def _subtree_ids(task: Task) -> list[int]:
    """The task and all its descendants (one query per generation)."""
    ids, level = [task.pk], [task.pk]
    while level:
        level = list(Task.objects.filter(parent_id__in=level).values_list("id", flat=True))
        ids.extend(level)
    return ids


def _lock_tasks(tasks: Q) -> dict[int, str]:
    """Lock the rows of these tasks (in id order), before any of their runs: every write of runs holds
    its tasks' locks, so the runs it reads next are current and the stored task status stays that of
    its runs. Their current statuses, by id."""
    return dict(Task.objects.select_for_update().filter(tasks).order_by("id").values_list("id", "status"))


# _lock_tasks for a task and its direct children (a kill), compiled once per connection.
_lock_family = CompiledRows(
    lambda task: (
        Task.objects.select_for_update()
        .filter(Q(pk=task) | Q(parent_id=task))
        .order_by("id")
        .values_list("id", "status")
    ),
    "task",
)


def _store_task_status(runs: list[tuple[int, str, datetime | None]]) -> None:
    """Store the status of the tasks of these ``(task id, status, finished_at)`` rows: all the runs of
    each, as they are now."""
    by_task: dict[int, list[tuple[str, datetime | None]]] = {}
    for task_id, status, finished_at in runs:
        by_task.setdefault(task_id, []).append((status, finished_at))
    tasks = []
    for task_id, rows in by_task.items():
        status, finished_at = task_status(rows)
        tasks.append(Task(pk=task_id, status=status, finished_at=finished_at))
    if len(tasks) == 1:
        _save_task_status(tasks[0])  # the usual case, a task without subtasks: the statement built once
    else:
        Task.objects.bulk_update(tasks, ["status", "finished_at"])


_RUN_KILL_FIELDS = ("id", "task_id", "organization_id", "status", "finished_at")
_runs_to_kill = CompiledRows(
    lambda task: Run.objects.filter(task_id=task).order_by("id").values_list(*_RUN_KILL_FIELDS), "task"
)
_mark_killed = CompiledUpdate(Run, ["status", "finished_at"])
_KILL_LIST_FIELDS = ("id", "task_id", "organization_id")
# The runs a kill stops (not finished, in an open status) of a task that is open and has no subtasks.
_open_runs_of_open_task = CompiledRows(
    lambda task: Run.objects.filter(
        ~Exists(Task.objects.filter(parent_id=OuterRef("task_id"))),
        task_id=task,
        finished_at__isnull=True,
        status__in=OPEN_STATUSES,
        task__status__in=OPEN_STATUSES,
    ).values_list("id"),
    "task",
)


def _kill_runs(task_ids: list[int], *, mark: bool) -> list[dict]:
    """The open runs of these (locked) tasks, as the nodes' kill list; marked killed, with the tasks'
    new status stored, when ``mark``."""
    if len(task_ids) == 1:  # the usual case, a task without subtasks: SQL built once
        runs = _runs_to_kill(task=task_ids[0])
    else:
        runs = list(Run.objects.filter(task_id__in=task_ids).order_by("id").values_list(*_RUN_KILL_FIELDS))
    kill_list = [
        {"task_id": task_id, "run_id": pk, "organization_id": org_id}
        for pk, task_id, org_id, status, end in runs
        if end is None and status in OPEN_STATUSES
    ]
    if mark and kill_list:
        now = timezone.now()
        killed = {entry["run_id"] for entry in kill_list}
        _mark_killed.rows(sorted(killed), [TaskStatus.KILLED, now])
        _store_task_status(
            [
                (task_id, TaskStatus.KILLED, now) if pk in killed else (task_id, status, end)
                for pk, task_id, _, status, end in runs
            ]
        )
    return kill_list


def _kill_open_task(
    principal: Principal | Actor,
    task_id: int,
    task: Task | None,
    *,
    guard: Statement | None = None,
    actor_organization_sql: Statement | None = None,
) -> tuple[int, list[dict]] | None:
    """The usual kill, an open task without subtasks, by one statement after its family's lock (sent
    with it): its open runs marked killed by the UPDATE that finds them, its new status stored
    ("killed": it was open) and the audit record. Where the backend can, the three are one statement
    (a data-modifying WITH) and, with the lock, one query string (PostgreSQL): a transaction of its
    own, one round trip. Elsewhere they are three, in a transaction (the caller's, if any). The task
    need not be read first (``task`` None): its organization (the audit record's) and its collaboration
    come with the statements. The task's collaboration and the nodes' kill list; None when that UPDATE
    found no run, nothing written (a missing, finished or deleted task, subtasks, no open run:
    ``_kill_runs``'s case). ``guard``, ``actor_organization_sql``: the check and the organization of a
    caller not loaded, made and read by the statements (``task`` None); the lock is taken only if the
    check holds."""
    _lock_family.lock_later(guard, task=task_id)
    values = [TaskStatus.KILLED, timezone.now()]
    keys = {"task": task_id}
    as_killed = Task(pk=task_id, status=TaskStatus.KILLED, finished_at=None)
    # A task not read: named by ``as_killed``, its organization and collaboration read by the statements.
    recorded, organization, also = task, None, None
    if task is None:
        recorded = as_killed
        organization = _of_task(Task.init_org.field.column, task_id)
        also = _of_task(Task.collaboration.field.column, task_id)
    if features(connection).supports_data_modifying_with:
        audited = audit_if_changed(
            principal,
            "task.kill",
            recorded,
            organization_sql=organization,
            actor_organization_sql=actor_organization_sql,
        )
        then = [_save_task_status.if_changed(as_killed), audited]
        rows = _mark_killed.matching(
            _open_runs_of_open_task, keys, values, _KILL_LIST_FIELDS, then, also, guard
        )
    else:
        with transaction.atomic(savepoint=False):
            rows = _mark_killed.matching(
                _open_runs_of_open_task, keys, values, _KILL_LIST_FIELDS, also=also, guard=guard
            )
            if rows:
                _save_task_status.later(as_killed)
                audit_queried(principal, "task.kill", recorded, organization, actor_organization_sql)
    if not rows:
        return None
    collaboration_id = task.collaboration_id if task is not None else rows[0][3]
    killed = [row[:3] for row in rows]
    kill_list = [{"task_id": of, "run_id": pk, "organization_id": org} for pk, of, org in sorted(killed)]
    return collaboration_id, kill_list


def _of_task(column: str, task_id: int) -> Statement:
    """A column of the task, as a scalar subquery of a statement that writes its runs."""
    quote = connection.ops.quote_name
    return f"SELECT {quote(column)} FROM {quote(Task._meta.db_table)} WHERE {quote('id')} = %s", [task_id]


def _kill_any_task(principal: Principal, task: Task, *, usual: bool) -> list[dict]:
    """The kill in the caller's transaction, the usual one first when ``usual``: the nodes' kill list."""
    killed = _kill_open_task(principal, task.pk, task) if usual else None
    if killed is not None:
        return killed[1]
    family = dict(_lock_family(task=task.pk))
    status = family.get(task.pk)
    if status is None:
        raise not_found(f"Task id={task.pk} not found!")  # deleted meanwhile
    if is_finished(status):
        raise bad_request(f"Task id={task.pk} already finished with status '{status}', nothing to kill!")
    kill_list = _kill_runs(list(family), mark=True)
    audit(principal, "task.kill", task)
    return kill_list


def _send_kill(collaboration_id: int, kill_list: list[dict]) -> None:
    """Tell the nodes of the collaboration to stop these runs (never an empty list)."""
    if kill_list:
        emit(
            "kill_containers",
            {"kill_list": kill_list, "collaboration_id": collaboration_id},
            room=collaboration_room(collaboration_id),
        )


# The users this process found without a global right to send events when they last killed a task: their
# kills read the task for the check first, without trying the one statement that would not change a row.
# Only a hint of the way to go: every kill is checked either way.
_killers_without_global_right: set[int] = set()
KILLERS_KEPT = 65536


def _kill_by_deferred_user(caller: DeferredCaller, task_id: int) -> tuple[int, list[dict]] | None:
    """The usual kill with the caller's own check in its statements (its token's login, a global right
    to send events: then it needs the task for no check), the caller's lookup saved: ``_kill_open_task``'s
    answer; None when it wrote nothing, for whatever reason."""
    login = caller.current_sql()
    if login is None:
        return None
    right = reaches_every_sql(caller.id, "event", "send")
    guard = f"{login[0]} AND {right[0]}", [*login[1], *right[1]]
    killed = _kill_open_task(
        Actor(caller.kind, caller.id),
        task_id,
        None,
        guard=guard,
        actor_organization_sql=caller.organization_sql(),
    )
    if killed is not None:
        caller.seen()
    return killed


def task_kill(*, principal: Principal | DeferredCaller, task_id: int) -> None:
    """Stop the open runs of a task and of its direct children (the task must not be finished), for a
    user who may send events to the task's collaboration."""
    # Where it is one statement (PostgreSQL) the usual kill is a transaction of its own; the others (and
    # the usual one on an SQLite with RETURNING, 3.35 or later) are made in one of Django's. A caller
    # whose right reaches every collaboration needs the task for no check: the usual kill comes first,
    # and the task is read only when it changed nothing (for the 404, the 400, a family). A caller not
    # loaded yet is checked by the usual kill's statements themselves (on either database), and loaded
    # only when they changed nothing.
    alone = features(connection).supports_data_modifying_with
    usual = not alone and connection.features.can_return_columns_from_insert
    read, task = False, None
    if isinstance(principal, DeferredCaller):
        caller_id = principal.id
        tried = (alone or usual) and caller_id not in _killers_without_global_right
        killed = _kill_by_deferred_user(principal, task_id) if tried else None
        if killed is not None:
            _send_kill(*killed)  # after the commit
            return
        # The caller with the task that its checks below need: one statement.
        principal, task, _ = principal.load_with(_task_by_pk, task_id)
        read = True
        if principal.reaches_every("event", "send"):
            _killers_without_global_right.discard(caller_id)
            if tried:  # the transaction's kill follows, without the usual one
                alone = usual = False
        else:
            if len(_killers_without_global_right) >= KILLERS_KEPT:
                _killers_without_global_right.clear()
            _killers_without_global_right.add(caller_id)
    if alone and principal.reaches_every("event", "send"):
        killed = _kill_open_task(principal, task_id, None)
        if killed is not None:
            _send_kill(*killed)  # after the commit
            return
        alone = False  # tried: the transaction's kill follows
    task = judged_named(
        principal, task if read else _task_by_pk(task_id), "task", missing=f"Task id={task_id} not found!",
        reach=lambda task: principal.reaches("event", "send", collaboration_id=task.collaboration_id),
    )  # fmt: skip
    principal.require(principal.reaches("event", "send", collaboration_id=task.collaboration_id))
    killed = _kill_open_task(principal, task.pk, task) if alone else None
    if killed is None:
        with transaction.atomic():
            killed = task.collaboration_id, _kill_any_task(principal, task, usual=usual)
    _send_kill(*killed)  # after the commit


@transaction.atomic
def task_delete(*, principal: Principal, task: Task) -> None:
    """Delete a task with all its descendants and their runs; running work is stopped first."""
    subtree = _subtree_ids(task)
    _lock_tasks(Q(pk__in=subtree))
    _send_kill(task.collaboration_id, _kill_runs(subtree, mark=False))
    audit(principal, "task.delete", task, subtree=subtree)
    # Children first, so each level's runs (and blobs) go with it.
    Task.objects.filter(pk__in=subtree).delete()


def user_tasks_delete(principal: Principal, user: User) -> None:
    """The tasks a user created, deleted with the user; each tree once (subtasks inherit the
    creator), running work stopped first."""
    for task in Task.objects.filter(init_user=user).exclude(parent__init_user=user):
        task_delete(principal=principal, task=task)


@transaction.atomic
def node_kill(*, principal: Principal, node: Node) -> None:
    if node.status != "online":
        raise bad_request(f"Node id={node.pk} is not online, so its tasks cannot be killed")
    emit(
        "kill_containers",
        {"node_id": node.pk, "collaboration_id": node.collaboration_id},
        room=collaboration_room(cast(int, node.collaboration_id)),  # a node to kill runs of has one
    )
    audit(principal, "node.kill_tasks", node)


# --- runs ----------------------------------------------------------------------------------------------
# The run with its task, by primary key, compiled once per database (a node's writes of ports).
_run_with_task = PkLookup(lambda: Run.objects.select_related("task"))


def _ports_sql(connection: BaseDatabaseWrapper) -> tuple[str, tuple]:
    """The run's ports as one JSON array of ``[id, port, label]``, in id order."""
    where = f"p.{connection.ops.quote_name(AlgorithmPort.run.field.column)} = {{outer}}"
    columns = ["id", "port", "label"]
    return operations(connection).json_rows_sql(AlgorithmPort._meta.db_table, "p", columns, where, "id"), ()


def _task_runs_sql(connection: BaseDatabaseWrapper) -> tuple[str, tuple]:
    """The runs of the outer row's task as one JSON array of ``[id, status, started_at, finished_at]``."""
    where = f"r.{connection.ops.quote_name(Run.task.field.column)} = {{outer}}"
    columns = ["id", "status", "started_at", "finished_at"]
    return operations(connection).json_rows_sql(Run._meta.db_table, "r", columns, where), ()


# The row of a run's task, locked: taken before the run is read (``lock_later``, with that read), as
# every write of runs holds its task's lock, so that the runs read next are current.
_lock_task_of_run = CompiledRows(
    lambda run: (
        Task.objects.select_for_update()
        .filter(pk=Subquery(Run.objects.filter(pk=run).values("task_id")))
        .values_list("id")
    ),
    "run",
)


def _datetime(value: str | None) -> datetime | None:
    """A time as JSON gives it (PostgreSQL: ISO 8601 with its offset; SQLite: as stored), as the ORM
    reads it: aware with ``USE_TZ`` (SQLite stores UTC), else naive in the default time zone."""
    parsed = parse_datetime(value) if value is not None else None
    if parsed is None:
        return None
    if settings.USE_TZ:
        return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)
    return timezone.make_naive(parsed) if timezone.is_aware(parsed) else parsed


# The run to update with its task, its ports (the answer shows them) and the statuses and times of
# its task's runs (from which the task's status follows), in one statement after the task's lock.
_run_to_update = PkLookup(
    lambda: Run.objects.select_related("task").annotate(
        port_rows=CorrelatedSQL(_ports_sql, output_field=TextField()),
        task_runs=CorrelatedSQL(_task_runs_sql, output_field=TextField(), outer="task_id"),
    )
)
# What a run update and a port write, written once (the ORM would build each statement per request).
# The updates of the run and of its (locked) task are read by nothing after them: they go with the
# transaction's next statement or its commit (``later``), with the audit record.
_save_run = CompiledUpdate(Run, ["started_at", "finished_at", "result", "log", "status"])
_save_task_status = CompiledUpdate(Task, ["status", "finished_at"])
_insert_port = CompiledInsert(AlgorithmPort, ["run", "port", "label"])


NOT_YOUR_RUN = "This is not your algorithm run to update!"


def _locked_run(caller: Principal | DeferredCaller, run_id: int) -> tuple[Principal, Run | None]:
    """The caller and the run to update, read after its task's lock. A caller not loaded yet is read
    by the run's statement (one round trip less); the lock then carries the token's check (a token no
    longer valid neither waits for the lock nor holds it), and the run is read again after an
    unguarded lock where that check did not hold but the caller passes ``load``'s."""
    if isinstance(caller, DeferredCaller):
        guard = caller.current_sql()
        if guard is not None:
            _lock_task_of_run.lock_later(guard, run=run_id)
            principal, run, locked = caller.load_with(_run_to_update, run_id)
            if locked:  # the check holds in the later statement: it held for the lock
                return principal, run
        caller = caller.load()
    _lock_task_of_run.lock_later(run=run_id)
    return caller, _run_to_update(run_id)


@transaction.atomic
def run_update(*, principal: Principal | DeferredCaller, run_id: int, data: dict) -> Run:
    """A node's update of one of its runs, with the semantics the vantage6 node relies on."""
    principal, run = _locked_run(principal, run_id)
    if run is None:
        raise missing_to(principal, "run", f"Run id={run_id} not found!", NOT_YOUR_RUN)
    principal.require(principal.allows("run", run, "edit"), NOT_YOUR_RUN)
    if run.blob_storage_used and data.get("result") not in (None, "", run.result):
        _require_readable_blobs(principal, [("The result", data["result"])])
    runs: dict[int, list[Any]] = {
        pk: [status, _datetime(started_at), _datetime(finished_at)]
        for pk, status, started_at, finished_at in json.loads(getattr(run, "task_runs"))  # noqa: B009 - an annotation
    }
    run.status, run.started_at, run.finished_at = runs[run.pk]
    if run.finished_at is not None:
        raise bad_request("Cannot update an already finished algorithm run!")
    # Only finished_at freezes a run: a node may report a final status first and its result later.
    status = data.get("status", run.status)
    emit("status_update", {"run_id": run.pk}, room=collaboration_room(run.task.collaboration_id))

    if data.get("started_at") is not None:
        run.started_at = data["started_at"]
    # Absent keys clear these fields: the node always sends them together.
    run.finished_at = data.get("finished_at")
    run.result = data.get("result")
    run.log = data.get("log")
    run.status = status
    _save_run.later(run)
    runs[run.pk] = [status, run.started_at, run.finished_at]

    if is_finished(status) and status != TaskStatus.COMPLETED:
        now = timezone.now()
        reason = f"Not started: algorithm run id={run.pk} of this task ended with status '{status}'"
        Run.objects.filter(task_id=run.task_id, started_at__isnull=True, finished_at__isnull=True).exclude(
            pk=run.pk
        ).update(
            status=TaskStatus.FAILED,
            finished_at=now,
            log=Case(
                When(Q(log__isnull=True) | Q(log=""), then=Value(reason)),
                default=F("log"),
                output_field=TextField(),
            ),
        )
        for pk, row in runs.items():
            if pk != run.pk and row[1] is None and row[2] is None:
                row[0], row[2] = TaskStatus.FAILED, now
    task = run.task
    new = task_status((status, finished_at) for status, _, finished_at in runs.values())
    if new != (task.status, task.finished_at):
        task.status, task.finished_at = new
        _save_task_status.later(task)
    audit(principal, "run.update", run, status=status)
    # The answer shows the run's ports, read with the run, as ``selectors.attach_run_details`` sets them.
    ports = json.loads(getattr(run, "port_rows") or "[]")  # noqa: B009 - an annotation
    run.port_entries = [{"id": pk, "port": port, "label": label} for pk, port, label in ports]  # type: ignore[attr-defined]  # read by RunOutput
    return run


def _run_of_node(principal: Principal, run_id: int) -> Run:
    """The run, if the calling node is the node that executes it (its organization, its collaboration)."""
    run = fetch_named(principal, _run_with_task, run_id, missing=f"Run id={run_id} not found!")
    principal.require(
        principal.allows("run", run, "edit"), "This algorithm run is not executed by your node!"
    )
    return run


def _runs_of_node(run: int, organization: int | Subquery, collaboration: int | Subquery) -> QuerySet[Run]:
    """The run, if the node of this organization in this collaboration executes it (the permission
    engine's rule for the runs a node writes, for SQL built once): only while the organization is a
    member of the collaboration."""
    member = Collaboration.organizations.through.objects.filter(
        collaboration_id=collaboration, organization_id=organization
    )
    return Run.objects.filter(
        Exists(member), pk=run, organization_id=organization, task__collaboration_id=collaboration
    )


_insert_port_of_node = CompiledInsertIf(
    AlgorithmPort,
    ["run", "port", "label"],
    CompiledRows(
        lambda **keys: _runs_of_node(**keys).values_list("id"), "run", "organization", "collaboration"
    ),
)


# The same rule for a node not loaded (``DeferredCaller``): its organization and collaboration as the
# database has them.
_insert_port_of_calling_node = CompiledInsertIf(
    AlgorithmPort,
    ["run", "port", "label"],
    CompiledRows(
        lambda run, node: _runs_of_node(
            run,
            Subquery(Node.objects.filter(pk=node).values("organization_id")),
            Subquery(Node.objects.filter(pk=node).values("collaboration_id")),
        ).values_list("id"),
        "run",
        "node",
    ),
)


def _port_of_deferred_node(
    caller: DeferredCaller, run_id: int, port: int, label: str | None
) -> AlgorithmPort | None:
    """The usual port, its write checking the caller itself (its token's login, its run): the caller's
    lookup saved. None when it wrote nothing, for whatever reason."""
    guard = caller.current_sql()
    if guard is None:
        return None
    keys = {"run": run_id, "node": caller.id}
    algorithm_port = audited_insert(
        _insert_port_of_calling_node,
        keys,
        Actor(caller.kind, caller.id),
        "port.create",
        guard=guard,
        actor_organization_sql=caller.organization_sql(),
        run_id=run_id,
        port=port,
        label=label,
    )
    if algorithm_port is not None:
        caller.seen()
    return algorithm_port


def port_create(
    *, principal: Principal | DeferredCaller, run_id: int, port: int, label: str | None
) -> AlgorithmPort:
    # The usual case: the port of a run the calling node executes with its audit record (on PostgreSQL
    # one statement, one round trip), and with the caller's check when it was not loaded (no lookup of
    # the caller before it).
    if isinstance(principal, DeferredCaller):
        algorithm_port = _port_of_deferred_node(principal, run_id, port, label)
        if algorithm_port is not None:
            return algorithm_port
        principal = principal.load()
    keys = {
        "run": run_id,
        "organization": principal.organization_id,
        "collaboration": principal.node.collaboration_id,
    }
    algorithm_port = audited_insert(
        _insert_port_of_node, keys, principal, "port.create", run_id=run_id, port=port, label=label
    )
    if algorithm_port is not None:
        return algorithm_port
    with transaction.atomic():
        run = _run_of_node(principal, run_id)  # the 404 or the 401, as the permission engine judges
        algorithm_port = _insert_port(run=run, port=port, label=label)
        audit(principal, "port.create", algorithm_port)
    return algorithm_port


@transaction.atomic
def ports_delete(*, principal: Principal, run_id: int) -> None:
    run = _run_of_node(principal, run_id)
    AlgorithmPort.objects.filter(run=run).delete()
    audit(principal, "port.delete", run)


# --- container tokens ----------------------------------------------------------------------------------
def _database_claims(task: Task) -> list[dict]:
    entries = []
    for db in task.databases.all():
        try:
            parameters = json.loads(db.parameters or "{}")
        except ValueError:
            parameters = {}
        entries.append({**(parameters if isinstance(parameters, dict) else {}), "label": db.database})
    return entries


def container_token_issue(*, principal: Principal, task_id: int, image: str) -> str:
    """A token for the algorithm container of ``task_id`` that the calling node is about to start."""
    task = fetch_named(
        principal, Task.objects.all(), task_id, missing=bad_request("Parent task does not exist!")
    )
    principal.require(image == task.image, "Image of the container does not match the image of the task!")
    principal.require(
        principal.node.collaboration_id == task.collaboration_id,
        "This task is not part of the collaboration of your node!",
    )
    # A node starts containers for its own runs only; any other token would act in the task's name.
    statuses = set(
        task.runs.filter(organization_id=principal.organization_id).values_list("status", flat=True)
    )
    principal.require(bool(statuses), "This task has no run of your node's organization!")
    if is_finished(task.status):
        raise bad_request("Task is already finished!")
    if all(map(is_finished, statuses)):  # its token would not work (``selectors.container_task``)
        raise bad_request("The run of your node's organization is already finished!")
    identity = {
        "client_type": "container",
        "node_id": principal.node.pk,
        "node_generation": principal.node.token_generation,  # its logins' (``selectors.container_task``)
        "organization_id": principal.organization_id,
        "collaboration_id": task.collaboration_id,
        "study_id": task.study_id,
        "store_id": task.algorithm_store_id,
        "task_id": task.pk,
        "image": task.image,
        "databases": _database_claims(task),
    }
    audit(principal, "token.container", task)
    return container_token(identity)


# --- large results -------------------------------------------------------------------------------------
def blob_upload(*, principal: Principal, read: Callable[[int], bytes]) -> str:
    storage = blobs.blob_storage()
    if storage is None:
        raise ApiError(501, "This server has no large result store configured")
    quota = settings.BLOB_QUOTA_BYTES
    try:
        name = blobs.save(storage, read, organization_id=principal.organization_id, quota=quota)
    except blobs.QuotaExceeded as exc:
        raise ApiError(
            413,
            f"The large result store holds {exc.used // 2**20} MiB of your organization's; "
            f"more than {quota // 2**20} MiB is not taken",
        ) from None
    except OSError as exc:
        # The store failed, not the request: its detail (paths of this machine) goes to the log only.
        logger.error("could not store an upload: %s", exc)
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        raise ApiError(507 if full else 503, "The large result store cannot take the upload now") from None
    audit(principal, "blob.create", None, uuid=name)
    return name


# --- clean-up ------------------------------------------------------------------------------------------
@transaction.atomic
def runs_cleanup(*, days: int, include_input: bool, now: datetime | None = None) -> int:
    """Wipe the results (and optionally inputs) of runs completed more than ``days`` ago."""
    now = now or timezone.now()
    runs = Run.objects.filter(
        status=TaskStatus.COMPLETED, finished_at__lt=now - timedelta(days=days), cleanup_at__isnull=True
    )
    blob_names = []
    for result, input_, used in runs.filter(blob_storage_used=True).values_list(
        "result", "input", "blob_storage_used"
    ):
        blob_names.append(result)
        if include_input and used:
            blob_names.append(input_)
    changes = {"result": "", "cleanup_at": now}
    if include_input:
        changes["input"] = ""
    count = runs.update(**changes)
    names = [name for name in blob_names if name]
    transaction.on_commit(lambda: blobs.delete(names))
    audit(None, "run.cleanup", None, count=count, days=days, include_input=include_input)
    return count


RUNS_CLEANUP_JOB = "runs_cleanup"
RUNS_CLEANUP_PERIOD = timedelta(hours=1)
_NEVER = datetime(2000, 1, 1)


def _claim(job: str, period: timedelta, now: datetime) -> bool:
    """Whether the caller runs ``job`` now: true for one caller per ``period`` across all server
    processes. Call it in a transaction; the claim is undone when that transaction rolls back."""
    if not PeriodicJob.objects.filter(name=job).exists():
        PeriodicJob.objects.bulk_create([PeriodicJob(name=job, last_run_at=_NEVER)], ignore_conflicts=True)
    # A concurrent claimer's UPDATE waits for this row's lock, and then no longer matches.
    return PeriodicJob.objects.filter(name=job, last_run_at__lte=now - period).update(last_run_at=now) == 1


def runs_cleanup_if_due(*, now: datetime | None = None) -> int | None:
    """The built-in hourly run data clean-up (``V6_RUNS_DATA_CLEANUP_DAYS``), done by one server
    process per hour: how many runs it cleared, or None when it is off or was not this call's turn."""
    days = settings.RUNS_DATA_CLEANUP_DAYS
    if days < 1:
        return None
    now = now or timezone.now()
    last = PeriodicJob.objects.filter(name=RUNS_CLEANUP_JOB).values_list("last_run_at", flat=True).first()
    if last is not None and last > now - RUNS_CLEANUP_PERIOD:
        return None  # not due: the usual case, answered without a write
    with transaction.atomic():
        if not _claim(RUNS_CLEANUP_JOB, RUNS_CLEANUP_PERIOD, now):
            return None
        # The first clean-up of a large database may update more runs than a request's bound allows.
        if unbounded := operations(connection).unbounded_transaction_sql():
            with connection.cursor() as cursor:
                cursor.execute(unbounded)
        return runs_cleanup(days=days, include_input=settings.RUNS_DATA_CLEANUP_INCLUDE_INPUT, now=now)


UNUSED_BLOBS_JOB = "unused_blobs"


def unused_blobs_cleanup_if_due(*, now: datetime | None = None) -> int | None:
    """Delete the uploads no run used within ``blobs.UNUSED_LIFETIME`` (else they would count against
    their organization's bound for ever), by one server process per hour: how many, or None when it
    was not this call's turn."""
    now = now or timezone.now()
    last = PeriodicJob.objects.filter(name=UNUSED_BLOBS_JOB).values_list("last_run_at", flat=True).first()
    if last is not None and last > now - RUNS_CLEANUP_PERIOD:
        return None
    with transaction.atomic():
        if not _claim(UNUSED_BLOBS_JOB, RUNS_CLEANUP_PERIOD, now):
            return None
        names = blobs.unused(now - blobs.UNUSED_LIFETIME)
        transaction.on_commit(lambda: blobs.delete(names))
    return len(names)


# --- what nodes report over their socket (registered with nodes.events at start-up) ---------------------
# The run a node reports about, if it is a run of that node: its id, task, job and parent task, by SQL
# built once (a node reports every status change of its runs over its socket).
_run_of_reporter = CompiledRows(
    lambda **keys: _runs_of_node(**keys).values_list("id", "task_id", "task__job_id", "task__parent_id"),
    "run",
    "organization",
    "collaboration",
)


def _reporter_keys(node: dict, data: object) -> dict[str, int] | None:
    """The keys of ``_run_of_reporter`` for a node's report, if it names a run."""
    run_id = data.get("run_id") if isinstance(data, dict) else None
    if not isinstance(run_id, int) or isinstance(run_id, bool):
        return None
    return {"run": run_id, "organization": node["org_id"], "collaboration": node["collaboration_id"]}


def _reported_run(node: dict, data: object) -> tuple[int, int, int, int | None] | None:
    """The run a node's report is about, if it is a run of that node: (id, task id, job id, parent id)."""
    keys = _reporter_keys(node, data)
    rows = _run_of_reporter(**keys) if keys is not None else []
    return rows[0] if rows else None


# ``TaskStatus.values`` builds its list on every use (~10 µs): too much for each event a node reports.
_RUN_STATUSES = frozenset(TaskStatus.values)


def _reported_status(data: object) -> str | None:
    """The status of an ``algorithm_status_change``: only a status a run can have."""
    status = data.get("status") if isinstance(data, dict) else None
    return status if isinstance(status, str) and status in _RUN_STATUSES else None


def run_status_reported(node: dict, data: object) -> dict | None:
    """The ``algorithm_status_change`` to relay: the node's report with ids from the database + job_id.
    It goes to every socket of the collaboration."""
    status = _reported_status(data)
    run = _reported_run(node, data) if status is not None else None
    return None if status is None or run is None else _status_event(node, status, run)


async def run_status_read_on_loop(node: dict, data: object) -> tuple[bool, dict | None]:
    """``run_status_reported`` with its run read on the event loop's thread: (True, the event or None),
    or (False, None) where the run could not be read there."""
    status = _reported_status(data)
    keys = _reporter_keys(node, data) if status is not None else None
    if status is None or keys is None:
        return True, None
    rows = await _run_of_reporter.on_loop(**keys)
    if rows is None:
        return False, None
    return True, _status_event(node, status, rows[0]) if rows else None


def _status_event(node: dict, status: str, run: tuple[int, int, int, int | None]) -> dict:
    run_id, task_id, job_id, parent_id = run
    return {
        "status": status,
        "run_id": run_id,
        "task_id": task_id,
        "job_id": job_id,
        "collaboration_id": node["collaboration_id"],
        "node_id": node["id"],
        "organization_id": node["org_id"],
        "parent_id": parent_id,
    }


@transaction.atomic
def run_log_reported(node: dict, data: object) -> dict | None:
    """Append an ``algorithm_log`` line to its run's log; the event to relay. A log grows no larger
    than one request body could set it (``PATCH /api/run``): the rest is dropped."""
    log = data.get("log") if isinstance(data, dict) else None
    reported = _reported_run(node, data)
    if not isinstance(log, str) or reported is None:
        return None
    # Its finish freezes a run (``run_update``): the log of a finished run is what the node reported then.
    run = Run.objects.select_for_update().filter(pk=reported[0], finished_at__isnull=True).first()
    if run is None:
        return None
    stored = run.log or ""
    if len(stored) + 1 + len(log) > settings.MAX_BODY_BYTES:
        return None
    run.log = stored + ("\n" if stored and not stored.endswith("\n") else "") + log
    run.save(update_fields=["log"])
    return {"run_id": run.pk, "task_id": run.task_id, "log": log}
