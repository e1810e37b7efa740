"""The official client sends ``delete_dependents=False`` when a deletion is asked for without its
dependents (its default, documented as refused while there are any). Read as vantage6 reads a flag (any
non-empty value is true), that deleted a collaboration's tasks, nodes and studies, an organization's users,
nodes and tasks, along with it."""

from __future__ import annotations

import pytest

from collaborations.models import Collaboration, Organization
from nodes.models import Node
from tasks.models import Task
from tests.collaborations.helpers import headers_of
from tests.factories import PASSWORD, make_org, make_task, make_user
from tests.tasks.conftest import container_headers_from
from vantage6.client import Client


def _dependents_of(world) -> tuple[int, int]:
    return (
        Task.objects.filter(collaboration=world.collab_ab).count(),
        Node.objects.filter(collaboration=world.collab_ab).count(),
    )


@pytest.mark.django_db
@pytest.mark.parametrize("off", ["False", "false", "FALSE", "0"])
def test_a_flag_sent_as_false_deletes_no_dependents(api, world, off):
    make_task(world.collab_ab, world.org_a, world.org_a)
    root = headers_of(make_org("root-org"), "Root")
    before = _dependents_of(world)

    response = api.delete(f"/api/collaboration/{world.collab_ab.pk}?delete_dependents={off}", **root)
    assert response.status_code == 400, response.content
    assert Collaboration.objects.filter(pk=world.collab_ab.pk).exists()
    assert _dependents_of(world) == before

    response = api.delete(f"/api/organization/{world.org_c.pk}?delete_dependents={off}", **root)
    assert response.status_code == 400, response.content
    assert Organization.objects.filter(pk=world.org_c.pk).exists()


@pytest.mark.django_db
def test_the_algorithm_clients_address_lookup_with_its_options_left_off(api, world):
    """What the algorithm client sends for ``get_addresses()``: every option, each ``False``."""
    task = make_task(world.collab_ab, world.org_a, world.org_a)
    container = container_headers_from(api, world.node_a, task)
    options = ("only_children", "only_parent", "include_children", "include_parent")
    query = "&".join(f"{option}=False" for option in options)
    response = api.get(f"/api/vpn/algorithm/addresses?{query}", **container)
    assert response.status_code == 200, response.content
    assert response.json()["addresses"] == []


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_the_official_clients_delete_without_dependents_is_refused(live_server, world):
    make_task(world.collab_ab, world.org_a, world.org_a)
    root = make_user(make_org("root"), "Root", username="root-user")
    host, port = live_server.url.rsplit(":", 1)
    client = Client(host, int(port), "/api", log_level="critical")
    client.authenticate(root.username, PASSWORD)
    before = _dependents_of(world)

    client.collaboration.delete(world.collab_ab.pk)  # delete_dependents=False, its default
    client.organization.delete(world.org_c.pk)

    assert Collaboration.objects.filter(pk=world.collab_ab.pk).exists()
    assert _dependents_of(world) == before
    assert Organization.objects.filter(pk=world.org_c.pk).exists()

    client.collaboration.delete(world.collab_ab.pk, delete_dependents=True)
    assert not Collaboration.objects.filter(pk=world.collab_ab.pk).exists()
