"""Writes on nodes: creation (with its API key), edits, deletion, a new API key, and login."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import transaction

from accounts.models import AuthStatus
from accounts.permissions import Principal
from accounts.services import audit
from accounts.sessions import end_all_logins, start_login
from collaborations.models import Collaboration, Organization
from collaborations.selectors import object_or_404
from nodes.models import Node
from nodes.selectors import node_by_api_key
from vantage6.api.errors import bad_request, unauthorized


def new_api_key() -> str:
    return str(uuid.uuid4())


def _require_unique_name(name: str, exclude_pk: int | None = None) -> None:
    if Node.objects.filter(name=name).exclude(pk=exclude_pk).exists():
        raise bad_request(f"Node with name '{name}' already exists!")


def require_no_node_yet(*, organization_id: int, collaboration_id: int) -> None:
    """An organization has at most one node per collaboration."""
    if Node.objects.filter(organization_id=organization_id, collaboration_id=collaboration_id).exists():
        raise bad_request(
            f"Organization id={organization_id} already has a node in collaboration id={collaboration_id}"
        )


@transaction.atomic
def node_create(
    *,
    principal: Principal,
    collaboration_id: int,
    organization_id: int | None = None,
    name: str | None = None,
) -> tuple[Node, str]:
    """A new node (offline) and its plaintext API key, which is never stored."""
    collaboration = object_or_404(Collaboration.objects.all(), collaboration_id, "Collaboration")
    organization = object_or_404(
        Organization.objects.all(), organization_id or principal.organization_id, "Organization"
    )
    principal.require(principal.allow_org_in_col("node", "create", organization.pk, collaboration.pk))
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


def node_login(*, api_key: uuid.UUID) -> dict:
    """The login answer of the node holding ``api_key``."""
    node = node_by_api_key(api_key)
    if node is None:
        raise unauthorized("Api key is not recognized!")
    access_token, refresh_token = start_login(node, "node")
    return {
        "access_token": access_token,
        "refresh_token": refresh_token,
        "refresh_url": f"{settings.API_PATH}/token/refresh",
        "node_url": f"{settings.API_PATH}/node/{node.pk}",
    }
