"""Mark silent nodes offline and end socket sessions that no server instance serves any more.

Every running instance does this by itself; the command is for when none runs (e.g. after a crash,
before a restart) or for a scheduler.
"""

from django.core.management.base import BaseCommand

from nodes.consumers import mark_silent_nodes_offline, server


class Command(BaseCommand):
    help = "Mark nodes offline whose heartbeats stopped, and end abandoned socket sessions."

    def handle(self, *_args, **_options) -> None:
        offline = mark_silent_nodes_offline()
        server.run_sync(server.sweep)
        self.stdout.write(f"{offline} node(s) marked offline")
