"""Reads on nodes: the filtered list, one node, the node an API key belongs to, and node metrics."""

from __future__ import annotations

import uuid
from datetime import datetime, time, timedelta

from django.db.models import QuerySet, TextField

from accounts.models import AuthStatus
from accounts.permissions import Principal, fetch, get_for, missing_to
from collaborations.models import Study
from nodes.models import LEGACY_HASH_PREFIX, Node, NodeConfig, NodeMetrics, api_key_digest
from vantage6.api.lookups import like_filtered
from vantage6.api.sql import CompiledList, CorrelatedSQL, PkLookup
from vantage6.db import operations


def _config_sql(connection) -> tuple[str, tuple]:
    """The node's configuration rows as one JSON array of ``[id, key, value]``."""
    where = f"c.{connection.ops.quote_name(NodeConfig.node.field.column)} = {{outer}}"
    columns = ["id", "key", "value"]
    return operations(connection).json_rows_sql(NodeConfig._meta.db_table, "c", columns, where), ()


# The configuration comes with each row: no prefetch query, whatever the page size. Built once (its
# annotation costs more to resolve than to copy); every read takes a copy.
_NODES = Node.objects.annotate(config_rows=CorrelatedSQL(_config_sql, output_field=TextField()))


def _nodes() -> QuerySet[Node]:
    return _NODES.all()


_node_pages = CompiledList(_nodes)  # the pages of the node list


def node_list(principal: Principal, filters: dict) -> QuerySet[Node]:
    nodes = principal.visible("node", _node_pages)
    nodes = principal.filtered(nodes, "node", filters, "organization_id")
    nodes = principal.filtered(nodes, "node", filters, "collaboration_id")
    if (study_id := filters.get("study_id")) is not None:
        missing = missing_to(principal, "study", f"Study with id={study_id} not found")
        study = fetch(Study.objects.all(), study_id, missing=missing)
        principal.require(principal.reaches("node", "view", collaboration_id=study.collaboration_id))
        nodes = nodes.filter(
            collaboration_id=study.collaboration_id,
            organization_id__in=study.organizations.values("pk"),
        )
    if status := filters.get("status"):
        nodes = nodes.filter(status=status)
    if ip := filters.get("ip"):
        nodes = nodes.filter(ip=ip)
    nodes = like_filtered(nodes, filters, "name")
    # Whole days, both ends included.
    if (seen_from := filters.get("last_seen_from")) is not None:
        nodes = nodes.filter(last_seen__gte=datetime.combine(seen_from, time.min))
    if (seen_till := filters.get("last_seen_till")) is not None:
        nodes = nodes.filter(last_seen__lt=datetime.combine(seen_till + timedelta(days=1), time.min))
    return nodes


_node = PkLookup(_nodes)  # compiled once per connection


def node_get(
    principal: Principal, pk: int | str, operation: str = "view", *, fields: dict | None = None
) -> Node:
    """A node, judged on its own collaboration (not on any collaboration its organization shares); an edit
    on the ``fields`` it changes."""
    return get_for(principal, _node, pk, operation, missing=f"Node with id={pk} not found", fields=fields)


def node_by_api_key(api_key: uuid.UUID) -> Node | None:
    """The node holding ``api_key``: one indexed lookup, then a constant-time comparison; failing
    that, the node whose imported bcrypt hash matches (only those nodes are tried)."""
    key = str(api_key)
    node = Node.objects.filter(api_key_hash=api_key_digest(key)).first()
    if node is not None and node.check_api_key(key):
        return node
    return next((node for node in legacy_key_nodes() if node.check_api_key(key)), None)


def legacy_key_nodes() -> QuerySet[Node]:
    """The nodes that still hold the bcrypt hash of their key, as imported from vantage6."""
    return Node.objects.filter(api_key_hash__startswith=LEGACY_HASH_PREFIX).order_by("pk")


def online_node_metrics() -> QuerySet[NodeMetrics]:
    """The last resource reports of the nodes that are online, by node id."""
    return NodeMetrics.objects.filter(node__status=AuthStatus.ONLINE).order_by("node_id")
