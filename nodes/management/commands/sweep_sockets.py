"""Mark silent nodes offline and bury the server processes that stopped beating (their connections end).

Every running instance does this by itself; the command is for when none runs (e.g. after a crash,
before a restart) or for a scheduler.
"""

from django.core.management.base import BaseCommand

from nodes.consumers import mark_silent_nodes_offline, server, tell_offline


class Command(BaseCommand):
    help = "Mark nodes offline whose heartbeats stopped, and bury server processes that stopped beating."

    def handle(self, *_args: object, **_options: object) -> None:
        offline = mark_silent_nodes_offline()
        tell_offline(offline)
        server.run_sync(server.sweep)
        self.stdout.write(f"{len(offline)} node(s) marked offline")
