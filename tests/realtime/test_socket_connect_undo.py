"""Connects of one identity that are refused (its login ended as they read its rights) while others of it
are under way: whatever order their undos come in, the connection on record is one a socket holds, and
its disconnect marks the identity offline (with real sockets: ``test_socket_presence_rows``)."""

from __future__ import annotations

import pytest

from accounts.models import Authenticatable
from nodes.consumers import connected, unconnected, went_offline
from nodes.models import SocketConnection


def _on_record(identity_id: int) -> tuple[str, str] | None:
    return (
        SocketConnection.objects.filter(identity_id=identity_id).values_list("generation", "process").first()
    )


@pytest.mark.django_db
@pytest.mark.parametrize("undone_first", ["earlier", "later"])
def test_two_refused_connects_put_back_the_connection_of_the_older_socket(world, undone_first):
    node = world.node_a
    older, _ = connected(node.pk, "p0")
    Authenticatable.objects.filter(pk=node.pk).update(status="online")
    earlier = connected(node.pk, "p1")
    later = connected(node.pk, "p2")

    for generation, replaced in (earlier, later) if undone_first == "earlier" else (later, earlier):
        unconnected(node.pk, generation, replaced)

    assert _on_record(node.pk) == (older, "p0")
    assert went_offline({"id": node.pk, "kind": "node", "generation": older}) is True
    assert Authenticatable.objects.get(pk=node.pk).status == "offline"


@pytest.mark.django_db
@pytest.mark.parametrize("undone_first", ["earlier", "later"])
def test_two_refused_connects_of_an_identity_without_a_socket_leave_no_connection(world, undone_first):
    node = world.node_a
    earlier = connected(node.pk, "p1")
    later = connected(node.pk, "p2")

    for generation, replaced in (earlier, later) if undone_first == "earlier" else (later, earlier):
        unconnected(node.pk, generation, replaced)

    assert _on_record(node.pk) is None


@pytest.mark.django_db
def test_a_refused_connect_replaced_by_an_accepted_one_leaves_that_one_on_record(world):
    node = world.node_a
    connected(node.pk, "p0")
    refused = connected(node.pk, "p1")
    accepted, _ = connected(node.pk, "p2")

    unconnected(node.pk, *refused)

    assert _on_record(node.pk) == (accepted, "p2")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "order", [("first", "second", "third"), ("second", "first", "third"), ("first", "third", "second")]
)
def test_three_refused_connects_in_any_order_put_back_the_connection_of_the_older_socket(world, order):
    """The undo of a connect two or more connects deep in the chain is kept until the chain reaches it."""
    node = world.node_a
    older, _ = connected(node.pk, "p0")
    Authenticatable.objects.filter(pk=node.pk).update(status="online")
    refused = {name: connected(node.pk, f"p{i}") for i, name in enumerate(("first", "second", "third"), 1)}

    for name in order:
        unconnected(node.pk, *refused[name])

    assert _on_record(node.pk) == (older, "p0")
    assert went_offline({"id": node.pk, "kind": "node", "generation": older}) is True


@pytest.mark.django_db
def test_two_refused_connects_under_an_accepted_one_leave_that_one_on_record(world):
    node = world.node_a
    connected(node.pk, "p0")
    first, second = connected(node.pk, "p1"), connected(node.pk, "p2")
    accepted, _ = connected(node.pk, "p3")

    unconnected(node.pk, *first)
    unconnected(node.pk, *second)

    assert _on_record(node.pk) == (accepted, "p3")
