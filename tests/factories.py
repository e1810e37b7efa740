"""Small builders of valid object graphs for tests (organization → collaboration → node → task → run)."""

from __future__ import annotations

import itertools
import uuid

from accounts.authentication import principal_from_claims
from accounts.models import Role, User
from accounts.permissions import Principal
from accounts.sessions import start_login
from accounts.tokens import container_token, decode
from collaborations.models import Collaboration, Organization, Study
from nodes.models import Node

_seq = itertools.count(1)
PASSWORD = "Password1!"


def make_org(name: str | None = None, **fields) -> Organization:
    return Organization.objects.create(name=name or f"org-{next(_seq)}", **fields)


def make_collab(*orgs: Organization, name: str | None = None, encrypted: bool = False) -> Collaboration:
    collab = Collaboration.objects.create(name=name or f"collab-{next(_seq)}", encrypted=encrypted)
    collab.organizations.add(*orgs)
    return collab


def make_study(collab: Collaboration, *orgs: Organization, name: str | None = None) -> Study:
    study = Study.objects.create(name=name or f"study-{next(_seq)}", collaboration=collab)
    study.organizations.add(*orgs)
    return study


def make_user(org: Organization, *role_names: str, username: str | None = None, rules=()) -> User:
    """A user of ``org`` holding the named built-in (or own) roles and extra rules."""
    username = username or f"user{next(_seq)}"
    user = User.objects.create_user(
        username=username, password=PASSWORD, email=f"{username}@example.org", organization=org
    )
    if role_names:
        user.roles.add(*Role.objects.filter(name__in=role_names))
    if rules:
        user.rules.add(*rules)
    return user


def make_node(org: Organization, collab: Collaboration, name: str | None = None) -> tuple[Node, str]:
    """A node and its plaintext API key."""
    api_key = str(uuid.uuid4())
    node = Node(name=name or f"node-{next(_seq)}", organization=org, collaboration=collab, status="offline")
    node.set_api_key(api_key)
    node.save()
    return node, api_key


def bearer(identity: User | Node | dict) -> dict[str, str]:
    """Request headers with an access token for a user, a node, or a container identity (a dict)."""
    if isinstance(identity, dict):
        token = container_token(identity)
    else:
        identity.refresh_from_db(fields=["token_generation"])
        token = start_login(identity, "user" if isinstance(identity, User) else "node")[0]
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def loaded_principal(identity: User | Node | dict) -> Principal:
    """The principal that a request of ``identity`` (a user, a node, or a container identity) is served
    as: loaded by its token as the server loads it."""
    token = bearer(identity)["HTTP_AUTHORIZATION"].split()[1]
    return principal_from_claims(decode(token), seen=False)


def full_page(api, path: str, headers: dict) -> str:
    """``path`` with ``per_page`` set to the number of its rows less one: the largest page that more
    rows follow, which costs the count query (the last page tells the number of rows itself)."""
    total = int(api.get(path, **headers)["total-count"])
    return f"{path}{'&' if '?' in path else '?'}per_page={max(total - 1, 1)}"


def make_task(collab, init_org, *orgs, init_user=None, parent=None, image="some/image", **fields):
    """A task in ``collab`` (created by ``init_org``) with a pending run for each of ``orgs``."""
    from tasks.models import Task

    task = Task.objects.create(
        collaboration=collab,
        init_org=init_org,
        init_user=init_user,
        parent=parent,
        image=image,
        job_id=parent.job_id if parent else 0,
        **fields,
    )
    if parent is None:
        task.job_id = task.pk
        task.save(update_fields=["job_id"])
    for org in orgs:
        make_run(task, org)
    store_status(task)
    return task


def make_run(task, org, status: str = "pending", **fields):
    from tasks.models import Run

    run = Run.objects.create(
        task=task, organization=org, status=status, input=fields.pop("input", ""), **fields
    )
    store_status(task)
    return run


def store_status(*tasks) -> None:
    """Store the status of ``tasks`` from their runs, as the services that write runs do (for tests
    that write runs directly)."""
    from tasks.models import task_status

    for task in tasks:
        task.status, task.finished_at = task_status(task.runs.values_list("status", "finished_at"))
        task.save(update_fields=["status", "finished_at"])
