"""``manage.py node_key NODE``: a new API key for a node (by id or name); the old one stops working.
``manage.py node_key --legacy``: the nodes that still log in with a key imported from vantage6."""

from __future__ import annotations

from typing import cast

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.permissions import principal_for_system
from nodes.models import Node
from nodes.selectors import legacy_key_nodes
from nodes.services import node_api_key_reset
from vantage6.management import FixtureError, require_migrated_database


def _node(reference: str) -> Node:
    by_id = reference.isdigit() and int(reference) < 2**31
    node = Node.objects.filter(pk=int(reference)).first() if by_id else None
    node = node or Node.objects.filter(name=reference).first()
    if node is None:
        raise CommandError(f"no node with id or name '{reference}' (see /api/node or the admin site)")
    return node


class Command(BaseCommand):
    help = (
        "Issue a new API key for a node, given by id or name, and print it. The old key stops working at "
        "once: put the new one in the node's configuration and restart the node. With --legacy: list "
        "the nodes that still log in with a key imported from vantage6."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("node", nargs="?", help="id or name of the node")
        parser.add_argument(
            "--legacy", action="store_true", help="list the nodes still on a key imported from vantage6"
        )

    def handle(self, *_args: object, node: str | None, legacy: bool, **_options: object) -> None:
        try:
            require_migrated_database()
        except FixtureError as exc:
            raise CommandError(exc.problems[0]) from None
        if legacy == (node is not None):
            raise CommandError("give either a node (id or name) or --legacy")
        if legacy:
            self._list_legacy()
            return
        target = _node(cast(str, node).strip())  # given: legacy is not
        api_key = node_api_key_reset(principal=principal_for_system(), node=target)
        self.stdout.write(f"New API key of node '{target.name}' (id {target.pk}, shown only this once):")
        self.stdout.write(api_key)

    def _list_legacy(self) -> None:
        nodes = list(legacy_key_nodes().values_list("pk", "name"))
        if not nodes:
            self.stdout.write("No node logs in with a key imported from vantage6.")
            return
        self.stdout.write(
            f"{len(nodes)} nodes still log in with a key imported from vantage6 (each switches to the "
            "faster form at its next login; `node_key NODE` gives one a new key):"
        )
        for pk, name in nodes:
            self.stdout.write(f"{pk}\t{name}")
