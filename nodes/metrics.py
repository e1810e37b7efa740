"""The gauges of nodes at ``/api/metrics``: online nodes, socket sessions and the nodes' resource reports."""

from __future__ import annotations

from collections import Counter

from nodes.models import Node
from nodes.selectors import online_node_metrics
from nodes.services import NODE_GPU_METRICS, NODE_METRICS
from vantage6.api.observability import label


def _socket_sessions() -> Counter[tuple[str, str]]:
    """This process's sessions by transport and by the kind of their owner ("node:5" → node; none yet:
    anonymous). Sessions live in the process that serves them: each instance reports its own."""
    from nodes.consumers import server  # the Socket.IO server imports the whole namespace

    return Counter(
        (session.transport, session.owner.partition(":")[0] or "anonymous")
        for session in list(server.sessions.values())
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
        "# HELP vantage6_sockets_connected Socket.IO sessions of this server process, by transport and "
        "client kind",
        "# TYPE vantage6_sockets_connected gauge",
    ]
    for (transport, kind), count in sorted(_socket_sessions().items()):
        labels = f'transport="{label(transport)}",kind="{label(kind)}"'
        lines.append(f"vantage6_sockets_connected{{{labels}}} {count}")
    return lines + _room_message_lines() + _node_metric_lines()


def _room_message_lines() -> list[str]:
    """The room messages this process published to the channel layer and received from it, sent to its
    sibling processes and received from them, and dropped (a broker away too long, a sibling stalled)."""
    from nodes.consumers import server
    from vantage6 import layers

    lines = [
        "# HELP vantage6_socket_room_messages_total room messages of this server process on the channel "
        "layer (published, received), on the links to its sibling processes (to_siblings, "
        "from_siblings), and dropped",
        "# TYPE vantage6_socket_room_messages_total counter",
    ]
    dropped = layers.dropped() + (server.siblings.dropped if server.siblings is not None else 0)
    for direction, count in [*server.room_messages.items(), ("dropped", dropped)]:
        lines.append(f'vantage6_socket_room_messages_total{{direction="{direction}"}} {count}')
    return lines
