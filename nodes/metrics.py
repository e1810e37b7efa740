"""The gauges of nodes at ``/api/metrics``: online nodes, socket sessions and the nodes' resource reports."""

from __future__ import annotations

from typing import Any

from django.db.models import Case, CharField, Count, Value, When
from django.db.models.functions import Left, StrIndex

from nodes.models import Node, SocketSession
from nodes.selectors import online_node_metrics
from nodes.services import NODE_GPU_METRICS, NODE_METRICS
from vantage6.api.observability import label


def _socket_sessions() -> list[Any]:
    """Live sessions by transport and by the kind of their owner ("node:5" → node; none yet: anonymous).

    Sessions are kept in the database by every instance, so the count covers the whole deployment.
    """
    kind = Case(
        When(owner="", then=Value("anonymous")),
        default=Left("owner", StrIndex("owner", Value(":")) - 1),
        output_field=CharField(),
    )
    return list(
        SocketSession.objects.annotate(kind=kind)
        .values("transport", "kind")
        .annotate(n=Count("sid"))
        .order_by("transport", "kind")
    )


def _node_metric_lines() -> list[str]:
    """The last resource report of each online node: a gauge per metric, labelled with the node's id,
    os and platform (GPU metrics also with ``gpu_id``)."""
    reports = list(online_node_metrics().values("node_id", "os", "platform", "values"))
    lines = []
    for name, help_text in {**NODE_METRICS, **NODE_GPU_METRICS}.items():
        lines += [f"# HELP vantage6_node_{name} {help_text}", f"# TYPE vantage6_node_{name} gauge"]
        for report in reports:
            labels = (
                f'node_id="{report["node_id"]}",os="{label(report["os"])}",'
                f'platform="{label(report["platform"])}"'
            )
            value = report["values"].get(name)
            if name in NODE_GPU_METRICS:
                for gpu_id, gpu_value in enumerate(value or ()):
                    lines.append(f'vantage6_node_{name}{{{labels},gpu_id="{gpu_id}"}} {gpu_value}')
            elif value is not None:
                lines.append(f"vantage6_node_{name}{{{labels}}} {value}")
    return lines


def gauges() -> list[str]:
    lines = ["# HELP vantage6_nodes_online nodes with status online", "# TYPE vantage6_nodes_online gauge"]
    lines.append(f"vantage6_nodes_online {Node.objects.filter(status='online').count()}")
    lines += [
        "# HELP vantage6_sockets_connected Socket.IO sessions of all server instances, by transport and "
        "client kind",
        "# TYPE vantage6_sockets_connected gauge",
    ]
    for row in _socket_sessions():
        labels = f'transport="{label(row["transport"])}",kind="{label(row["kind"])}"'
        lines.append(f"vantage6_sockets_connected{{{labels}}} {row['n']}")
    return lines + _node_metric_lines()
