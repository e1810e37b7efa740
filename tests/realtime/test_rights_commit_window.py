"""A socket that connects while a change of rights is being committed, and so derives its rooms from
the rights before it, is among the sockets the change rechecks."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from accounts.signals import rights_changed
from collaborations.models import Collaboration
from nodes import consumers
from tests import factories
from tests.conftest import requires_services


@requires_services("postgres")  # two connections writing at once
@pytest.mark.django_db(transaction=True)
def test_a_socket_connected_before_the_commit_is_rechecked(world, monkeypatch):
    member_b = factories.make_user(world.org_b)
    rechecked: list[list[str]] = []
    monkeypatch.setattr(consumers, "recheck_after_commit", rechecked.append)

    def connects() -> None:
        try:
            consumers.connected(member_b.pk, "process")  # committed on a connection of its own
        finally:
            connection.close()

    with transaction.atomic():
        world.collab_ab.organizations.remove(world.org_b)
        rights_changed.send(sender=Collaboration, organizations=[world.org_b.pk])
        thread = threading.Thread(target=connects)
        thread.start()
        thread.join()

    assert rechecked == [[f"user:{member_b.pk}"]]
