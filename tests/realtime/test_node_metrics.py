"""The resource reports of nodes (``node_metrics_update``) as Prometheus gauges at /api/metrics."""

from __future__ import annotations

import pytest
import requests

from nodes.models import NodeMetrics
from tests.ops.test_observability import metric
from tests.realtime.helpers import eventually, token, user_socket
from tests.realtime.live import LIVE, Daphne

pytestmark = pytest.mark.live

REPORT = {
    "cpu_percent": 12.5,
    "memory_percent": 40,
    "num_algorithm_containers": 2,
    "os": "Linux",
    "platform": "x86_64",
    "cpu_count": 8,
    "memory_total": 16_000_000_000,
    "memory_available": 9_000_000_000,
    "gpu_count": 2,
    "gpu_load": [0.5, 0.25],
    "gpu_memory_used": [100, 200],
    "gpu_memory_free": [300, 400],
    "gpu_temperature": [60, 61],
}


@pytest.fixture(scope="module")
def metrics_server(live_db, live_folder):
    daphne = Daphne(live_db.process_env(V6_METRICS="1"), live_folder)
    yield daphne
    daphne.stop()


def scrape(server) -> str:
    response = requests.get(f"{server.url}/api/metrics", timeout=10)
    assert response.status_code == 200
    return response.text


def test_a_nodes_report_becomes_labelled_gauges_until_it_disconnects(metrics_server, live_world, sockets):
    node_a = live_world.node_a
    node = sockets(metrics_server.url, token(node_a))
    node.wait_ready(node_a)
    labels = {"node_id": str(node_a.pk), "os": "Linux", "platform": "x86_64"}

    node.emit("node_metrics_update", REPORT)

    assert eventually(lambda: metric(scrape(metrics_server), "vantage6_node_cpu_percent", **labels) == 12.5)
    text = scrape(metrics_server)
    for name in ("memory_percent", "num_algorithm_containers", "cpu_count", "memory_total", "gpu_count"):
        assert metric(text, f"vantage6_node_{name}", **labels) == REPORT[name], name
    assert metric(text, "vantage6_node_gpu_load", **labels, gpu_id="1") == 0.25
    assert metric(text, "vantage6_node_gpu_temperature", **labels, gpu_id="0") == 60
    assert "# TYPE vantage6_node_gpu_memory_free gauge" in text

    node.emit("node_metrics_update", {**REPORT, "cpu_percent": 99.0, "os": "Windows"})
    windows = {**labels, "os": "Windows"}
    assert eventually(lambda: metric(scrape(metrics_server), "vantage6_node_cpu_percent", **windows) == 99)
    assert metric(scrape(metrics_server), "vantage6_node_cpu_percent", **labels) is None  # replaced

    node.close()
    assert eventually(lambda: not NodeMetrics.objects.using(LIVE).filter(node_id=node_a.pk).exists())
    assert "vantage6_node_cpu_percent{" not in scrape(metrics_server)


def test_reports_cannot_add_series_or_come_from_users(metrics_server, live_world, sockets):
    node_a = live_world.node_a
    as_user = user_socket(sockets, metrics_server.url, live_world.org_a)
    node = sockets(metrics_server.url, token(node_a))
    node.wait_ready(node_a)

    as_user.emit("node_metrics_update", {"cpu_percent": 1})
    node.emit(
        "node_metrics_update",
        {
            "cpu_percent": "high",
            "memory_percent": True,
            "gpu_load": list(range(100)),
            "gpu_temperature": [1, "hot"],
            "disk_percent": 3,
            "os": 'a"b\n' + "x" * 200,
            "platform": 5,
            "num_algorithm_containers": 1,
        },
    )

    report = eventually(lambda: NodeMetrics.objects.using(LIVE).filter(node_id=node_a.pk).first())
    assert report.values == {"gpu_load": list(range(16)), "num_algorithm_containers": 1}
    text = scrape(metrics_server)
    assert "disk_percent" not in text and "vantage6_node_cpu_percent{" not in text
    os_label = 'a\\"b\\n' + "x" * 60
    line = f'vantage6_node_num_algorithm_containers{{node_id="{node_a.pk}",os="{os_label}",platform=""}} 1'
    assert line in text.splitlines()
    assert text.count("vantage6_node_gpu_load{") == 16
