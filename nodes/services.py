"""Writes on nodes: creation (with its API key), edits, deletion, a new API key, login, and the
resource reports of nodes."""

from __future__ import annotations

import sys
import uuid
from typing import cast

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.audit import actor_of, audit
from accounts.login import audit_failed_login
from accounts.models import AuditAction, AuthStatus
from accounts.permissions import Principal, fetch_named
from accounts.sessions import end_all_logins, start_login
from accounts.signals import rights_changed
from collaborations.models import Collaboration, Organization
from collaborations.selectors import collaboration_named
from nodes.models import Node, NodeMetrics, api_key_digest
from nodes.selectors import node_by_api_key
from vantage6.api.errors import bad_request, unauthorized


def new_api_key() -> str:
    return str(uuid.uuid4())


def _require_unique_name(name: str, exclude_pk: int | None = None) -> None:
    if Node.objects.filter(name=name).exclude(pk=cast(int, exclude_pk)).exists():  # None excludes nothing
        raise bad_request(f"Node with name '{name}' already exists!")


def require_no_node_yet(*, organization_id: int, collaboration_id: int) -> None:
    """An organization has at most one node per collaboration."""
    if Node.objects.filter(organization_id=organization_id, collaboration_id=collaboration_id).exists():
        raise bad_request(
            f"Organization id={organization_id} already has a node in collaboration id={collaboration_id}"
        )


def _member_node(
    principal: Principal, collaboration: Collaboration, nodes: QuerySet[Node], node_id: int
) -> Node:
    """The node a request names to join or leave ``collaboration``: a node of a member may, whoever may
    view it."""
    members = collaboration.organizations.values_list("pk", flat=True)
    return fetch_named(
        principal, nodes, node_id, missing=f"Node with id={node_id} not found",
        reach=lambda node: node.organization_id in members,
    )  # fmt: skip


@transaction.atomic
def collaboration_node_add(*, principal: Principal, collaboration: Collaboration, node_id: int) -> None:
    node = _member_node(principal, collaboration, Node.objects.select_for_update(), node_id)
    if node.collaboration_id == collaboration.pk:
        raise bad_request(f"Node id={node.pk} is already part of collaboration id={collaboration.pk}")
    # A node belongs to one collaboration: moving it would hand it the other one's tasks.
    if node.collaboration_id is not None:
        raise bad_request(f"Node id={node.pk} already belongs to collaboration id={node.collaboration_id}")
    if not collaboration.organizations.filter(pk=node.organization_id).exists():
        raise bad_request(
            f"Organization id={node.organization_id} of node id={node.pk} is not part of "
            f"collaboration id={collaboration.pk}"
        )
    require_no_node_yet(organization_id=node.organization_id, collaboration_id=collaboration.pk)
    # Only by those who may edit the node: it serves its organization's data to its collaboration.
    principal.require(principal.allows("node", node, "edit"))
    node.collaboration = collaboration
    node.save(update_fields=["collaboration"])
    rights_changed.send(sender=Node, identities=[node.pk])
    audit(principal, "collaboration.edit", collaboration, added_node=node.pk)


@transaction.atomic
def collaboration_node_remove(*, principal: Principal, collaboration: Collaboration, node_id: int) -> None:
    node = _member_node(principal, collaboration, Node.objects.all(), node_id)
    if node.collaboration_id != collaboration.pk:
        raise bad_request(f"Node id={node.pk} is not part of collaboration id={collaboration.pk}")
    node.collaboration = None
    node.save(update_fields=["collaboration"])
    rights_changed.send(sender=Node, identities=[node.pk])
    audit(principal, "collaboration.edit", collaboration, removed_node=node.pk)


@transaction.atomic
def node_create(
    *,
    principal: Principal,
    collaboration_id: int,
    organization_id: int | None = None,
    name: str | None = None,
) -> tuple[Node, str]:
    """A new node (offline) and its plaintext API key, which is never stored."""
    collaboration = collaboration_named(principal, collaboration_id, "node", "create")
    organization_id = organization_id or principal.organization_id
    organization = fetch_named(
        principal,
        Organization.objects.all(),
        organization_id,
        missing=f"Organization with id={organization_id} not found",
        reach=lambda organization: principal.reaches("node", "create", organization_id=organization.pk),
    )
    principal.require(
        principal.reaches(
            "node", "create", organization_id=organization.pk, collaboration_id=collaboration.pk
        )
    )
    if not collaboration.organizations.filter(pk=organization.pk).exists():
        raise bad_request(
            f"Organization id={organization.pk} is not part of collaboration id={collaboration.pk}"
        )
    require_no_node_yet(organization_id=organization.pk, collaboration_id=collaboration.pk)
    name = name or f"{organization.name} - {collaboration.name} Node"
    _require_unique_name(name)
    api_key = new_api_key()
    node = Node(name=name, organization=organization, collaboration=collaboration, status=AuthStatus.OFFLINE)
    node.set_api_key(api_key)
    node.save()
    audit(principal, "node.create", node)
    return node, api_key


@transaction.atomic
def node_update(*, principal: Principal, node: Node, data: dict) -> Node:
    if "name" in data:
        _require_unique_name(data["name"], exclude_pk=node.pk)
        node.name = data["name"]
    if data.get("ip"):
        node.ip = data["ip"]
    if data.get("clear_ip"):
        node.ip = None
    node.save(update_fields=["name", "ip"])
    audit(principal, "node.edit", node, fields=sorted(data))
    return node


@transaction.atomic
def node_delete(*, principal: Principal, node: Node) -> None:
    audit(principal, "node.delete", node, name=node.name)
    node.delete()


@transaction.atomic
def node_api_key_reset(*, principal: Principal, node: Node) -> str:
    """A new API key for the node; the old one stops working at once."""
    api_key = new_api_key()
    node.set_api_key(api_key)
    node.save(update_fields=["api_key_hash"])
    end_all_logins(node.pk)
    audit(principal, "node.api_key_reset", node)
    return api_key


@transaction.atomic
def _upgrade_legacy_api_key(node: Node, api_key: str) -> None:
    """Replace the imported bcrypt hash by the digest: later logins are one indexed lookup."""
    # Conditional: of two parallel first logins only one records the upgrade.
    if Node.objects.filter(pk=node.pk, api_key_hash=node.api_key_hash).update(
        api_key_hash=api_key_digest(api_key)
    ):
        audit(None, "node.api_key_upgrade", node)


def node_login(*, api_key: uuid.UUID) -> dict:
    """The login answer of the node holding ``api_key``."""
    node = node_by_api_key(api_key)
    if node is None:
        audit_failed_login(AuditAction.NODE_LOGIN_FAILED, once_per="unknown key")
        raise unauthorized("Api key is not recognized!")
    if node.has_legacy_api_key:
        _upgrade_legacy_api_key(node, str(api_key))
    access_token, refresh_token = start_login(node, "node")
    audit(actor_of(node), AuditAction.NODE_LOGIN, node)
    return {
        "access_token": access_token,
        "refresh_token": refresh_token,
        "refresh_url": f"{settings.API_PATH}/token/refresh",
        "node_url": f"{settings.API_PATH}/node/{node.pk}",
    }


# --- resource reports ----------------------------------------------------------------------------------
# The metrics a node reports (node_metrics_update), each with its Prometheus help text. Other keys are
# logged and dropped, so a node cannot add series.
NODE_METRICS = {
    "cpu_percent": "CPU use of the node's machine, percent",
    "memory_percent": "memory use of the node's machine, percent",
    "num_algorithm_containers": "algorithm containers the node runs",
    "cpu_count": "CPUs of the node's machine",
    "memory_total": "memory of the node's machine, bytes",
    "memory_available": "available memory of the node's machine, bytes",
    "gpu_count": "GPUs of the node's machine",
}
NODE_GPU_METRICS = {
    "gpu_load": "load of a GPU of the node's machine, percent",
    "gpu_memory_used": "memory used on a GPU of the node's machine, bytes",
    "gpu_memory_free": "memory free on a GPU of the node's machine, bytes",
    "gpu_temperature": "temperature of a GPU of the node's machine, degrees Celsius",
}
MAX_GPUS = 16  # GPUs reported per node (bounds the series a node can add)
LABEL_LENGTH = 64  # of the os and platform labels


def _number(value: object) -> bool:
    """A finite number a gauge (a float) holds: JSON's integers have no bound, and ``math.isfinite``
    raises for one beyond a float."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return abs(value) <= sys.float_info.max  # False for NaN too


def node_metrics_store(node_id: int, report: object) -> tuple[list[str], dict | None]:
    """Keep a node's resource report in place of its previous one: the keys left out (unknown, or values
    of the wrong type), and the fields of its row as kept (None if the report is no object)."""
    if not isinstance(report, dict):
        return ["<not an object>"], None
    values: dict[str, object] = {}
    labels = {"os": "", "platform": ""}
    ignored = []
    for key, value in report.items():
        if key in labels and isinstance(value, str):
            labels[key] = value[:LABEL_LENGTH]
        elif key in NODE_METRICS and _number(value):
            values[key] = value
        elif key in NODE_GPU_METRICS and isinstance(value, list) and all(map(_number, value)):
            values[key] = value[:MAX_GPUS]
        else:
            ignored.append(str(key)[:LABEL_LENGTH])
    now = timezone.now()
    NodeMetrics.objects.update_or_create(
        node_id=node_id, defaults={**labels, "values": values, "reported_at": now}
    )
    # In plain values: a socket's state, which keeps it, travels with the socket to another process.
    return ignored, {**labels, "values": values, "reported_at": now.isoformat()}
