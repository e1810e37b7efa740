"""Socket.IO fuzzing: every event a client may send, with hostile payloads, as a node and as a user, over
websocket and over long-polling, on a server with the demo network. Then each socket must still be
connected and its node's ``ping`` still taken; the server must still answer. Prints what failed and exits 1.

    python scripts/fuzz/socket_events.py SERVER_URL DEMO_JSON ROOT_PASSWORD

Long-polling packets are batched by the client into one request: a batch over the server's body bound is
answered 413 and the client ends its session. That is a clear refusal, not a failure: the large payloads
are sent over the websocket only.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import requests
import socketio
from identities import identities  # beside this script, which is first on the path

NAMESPACE = "/tasks"
EVENTS = [
    "algorithm_status_change", "algorithm_log", "node_info_update", "node_metrics_update", "ping", "message",
    "error", "join_room", "leave_room", "connect", "disconnect", "sync", "new_task", "x" * 3000, "",
]  # fmt: skip


def _nested(depth: int, make: type[list] | type[dict]) -> object:
    value: object = make()
    for _ in range(depth):
        value = [value] if make is list else {"a": value}
    return value


def payloads(run: dict) -> list[object]:
    """Hostile payloads, many of them a valid report of the node's run with one field changed."""
    status = {
        "run_id": run["id"], "task_id": run["task"]["id"], "collaboration_id": run["collaboration_id"],
        "status": "active", "node_id": run["node_id"], "organization_id": run["organization"]["id"],
        "parent_id": None,
    }  # fmt: skip
    log = {key: status[key] for key in ("run_id", "task_id", "collaboration_id")}
    changed = [
        ("run_id", None), ("run_id", 2**63), ("run_id", -1), ("run_id", "1"), ("run_id", 1.5),
        ("run_id", True), ("run_id", [run["id"]]), ("status", 5), ("status", "nonsense"), ("status", None),
        ("status", "a" * 100_000),
        ("task_id", "x"), ("collaboration_id", 2**63), ("collaboration_id", "1"), ("collaboration_id", [1]),
        ("node_id", "x"), ("organization_id", {}), ("parent_id", []),
    ]  # fmt: skip
    metrics = {
        "cpu_percent": "x", "memory_percent": 2**70, "num_algorithm_containers": -5, "os": "\x00",
        "platform": "a" * 10_000, "cpu_count": 1.5, "memory_total": 2**64, "memory_available": "1",
        "gpu_count": 2, "gpu_load": [None, "x", 2**70], "gpu_memory_used": 5, "gpu_temperature": [1, 2, 3],
    }  # fmt: skip
    return [
        *(None, True, 0, -1, 2**63, 2**200, 1.5, 1e308, "", "\x00", "\ud800", "a" * 300_000, [], [None], {}),
        _nested(200, list), _nested(200, dict), [1] * 10_000, {f"k{i}": i for i in range(5000)},
        *({**status, key: value} for key, value in changed),
        *({**log, "log": value} for value in (5, ["x"], "\x00", "\ud800", None, {"a": 1})),
        {"config": "x"}, [{"key": None, "value": {}}], {"a": [{"b": [1, {"c": None}]}]},
        {"a" * 1000: "b" * 1000}, metrics, b"\x00\xff" * 10, b"",
    ]  # fmt: skip


def fuzz(
    url: str, token: str, transport: str, sent: list[object], node_seen: Callable[[], object] | None
) -> list[str]:
    client = socketio.Client(reconnection=False)
    client.connect(
        url, headers={"Authorization": f"Bearer {token}"}, namespaces=[NAMESPACE], transports=[transport],
        wait_timeout=10,
    )  # fmt: skip
    failures = []
    for event in EVENTS:
        for data in sent:
            client.emit(event, data, namespace=NAMESPACE)
            time.sleep(0.003)
        for data in ((1, "a", None), (sent[0], sent[0]), ()):
            client.emit(event, data, namespace=NAMESPACE)
        if not client.connected:
            failures.append(f"{transport}: closed after {event[:30]!r}")
            return failures
    if node_seen is not None:
        before = node_seen()
        time.sleep(3)  # past the packet bound the fuzzing used up, and the second of ``last_seen``
        client.emit("ping", namespace=NAMESPACE)
        if not any(time.sleep(1) or node_seen() != before for _ in range(20)):
            failures.append(f"{transport}: a ping after the fuzzing not taken")
    client.disconnect()
    return failures


def main(url: str, demo_file: str, root_password: str) -> int:
    api = f"{url}/api"
    with open(demo_file) as file:
        demo = json.load(file)
    tokens = identities(api, demo, root_password)
    root = {"Authorization": f"Bearer {tokens['root']}"}
    node_id = demo["nodes"][0]["id"]
    run = requests.get(f"{api}/run", headers=root, params={"node_id": node_id}, timeout=30).json()["data"][0]
    run = {**run, "node_id": node_id, "collaboration_id": demo["collaboration"]["id"]}

    def node_seen() -> object:
        return requests.get(f"{api}/node/{node_id}", headers=root, timeout=30).json()["last_seen"]

    failures = []
    for who in ("node", "root"):
        for transport in ("websocket", "polling"):
            sent = [data for data in payloads(run) if transport == "websocket" or len(repr(data)) < 50_000]
            failures += [
                f"{who} {failure}"
                for failure in fuzz(url, tokens[who], transport, sent, node_seen if who == "node" else None)
            ]
    for path in ("/health", "/node"):
        if (status := requests.get(f"{api}{path}", headers=root, timeout=30).status_code) != 200:
            failures.append(f"GET {path}: {status}")
    print("\n".join(failures) or "no failure")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1].rstrip("/"), *sys.argv[2:4]))
