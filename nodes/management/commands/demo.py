"""``manage.py demo``: a demo network to try the server with, and the credentials to use it."""

from __future__ import annotations

import json
import secrets

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.audit import audit
from accounts.models import User
from accounts.permissions import principal_for_system
from collaborations.models import Collaboration, Organization
from nodes.management.fixture import load, node_key_lines
from nodes.models import Node
from nodes.services import node_api_key_reset
from vantage6.management import FixtureError, require_migrated_database

COLLABORATION = "demo-collaboration"
ORGANIZATIONS = ("demo-organization-1", "demo-organization-2", "demo-organization-3")
RESEARCHER = "demo-researcher"


def _password() -> str:
    # Random, and within the password policy (upper, lower, digit, special character).
    return f"Demo-{secrets.token_urlsafe(9)}-7a"


def _fixture(password: str) -> dict:
    return {
        "organizations": [{"name": name, "domain": f"{name}.example.org"} for name in ORGANIZATIONS],
        "collaborations": [{"name": COLLABORATION, "encrypted": False, "organizations": list(ORGANIZATIONS)}],
        "users": [
            {
                "username": RESEARCHER,
                "organization": ORGANIZATIONS[0],
                "email": f"{RESEARCHER}@{ORGANIZATIONS[0]}.example.org",
                "password": password,
                "firstname": "Demo",
                "lastname": "Researcher",
                "roles": ["Researcher"],
            }
        ],
        "nodes": [
            {"organization": name, "collaboration": COLLABORATION, "name": f"demo-node-{i}"}
            for i, name in enumerate(ORGANIZATIONS, start=1)
        ],
    }


def _taken() -> list[str]:
    """Demo names already used by something else: the demo would adopt (and change) those."""
    taken = [f"organization '{name}'" for name in Organization.objects.filter(name__in=ORGANIZATIONS)]
    taken += [f"user '{user}'" for user in User.objects.filter(username=RESEARCHER)]
    taken += [f"node '{node}'" for node in Node.objects.filter(name__startswith="demo-node-")]
    return taken


@transaction.atomic
def _reset(password: str) -> list[tuple[str, str]]:
    """New node API keys and a new researcher password for the existing demo network."""
    principal = principal_for_system()
    user = User.objects.get(username=RESEARCHER)
    user.set_password(password)
    user.save(update_fields=["password"])
    audit(principal, "user.password_reset", user)
    nodes = Node.objects.filter(collaboration__name=COLLABORATION).order_by("name")
    return [(node.name, node_api_key_reset(principal=principal, node=node)) for node in nodes]


class Command(BaseCommand):
    help = (
        f"Create a demo network: organizations {', '.join(ORGANIZATIONS)} in the unencrypted collaboration "
        f"'{COLLABORATION}', a node for each, and the user '{RESEARCHER}' (role Researcher) of the first; "
        "then print the researcher's password and the nodes' API keys. When the network exists already "
        "nothing is changed (the keys cannot be shown again) unless --reset is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset",
            action="store_true",
            help="if the demo network exists: issue new node API keys and a new researcher password",
        )
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print the credentials as one JSON object"
        )

    def handle(self, *_args: object, reset: bool, as_json: bool, **_options: object) -> None:
        try:
            require_migrated_database()
            exists = Collaboration.objects.filter(name=COLLABORATION).exists()
            if exists and not reset:
                self._exists(as_json)
                return
            password = _password()
            if exists:
                keys = _reset(password)
            elif taken := _taken():
                raise FixtureError([f"{', '.join(taken)} exist(s) already but not the demo collaboration"])
            else:
                progress = (lambda _line: None) if as_json else (lambda line: self.stdout.write(f"  {line}"))
                if not as_json:
                    self.stdout.write("Creating the demo network")
                keys = load(_fixture(password), progress=progress).node_keys
        except FixtureError as exc:
            raise CommandError("the demo network was not created:\n  " + "\n  ".join(exc.problems)) from None
        except User.DoesNotExist:
            raise CommandError(f"the demo network is incomplete (no user '{RESEARCHER}')") from None
        self._credentials(password, keys, as_json, reset=exists)

    def _exists(self, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps({"exists": True, "username": RESEARCHER}))
            return
        self.stdout.write(
            f"The demo network exists already (collaboration '{COLLABORATION}'); nothing was changed. "
            f"Log in as '{RESEARCHER}' with the password printed when it was created, or run "
            "`python manage.py demo --reset` for a new password and new node API keys."
        )

    def _credentials(self, password: str, keys: list[tuple[str, str]], as_json: bool, *, reset: bool) -> None:
        collaboration = Collaboration.objects.get(name=COLLABORATION)
        nodes = {node.name: node for node in Node.objects.filter(collaboration=collaboration)}
        api = f"http://{settings.HOST}:{settings.PORT}{settings.API_PATH}"
        if as_json:
            data = {
                "exists": reset,
                "api": api,
                "username": RESEARCHER,
                "password": password,
                "collaboration": {"id": collaboration.pk, "name": collaboration.name},
                "nodes": [
                    {"id": nodes[name].pk, "name": name, "organization_id": nodes[name].organization_id,
                     "api_key": key}
                    for name, key in keys
                ],
            }  # fmt: skip
            self.stdout.write(json.dumps(data))
            return
        self.stdout.write(self.style.SUCCESS("Demo network ready."))
        self.stdout.write(f"  server:        {api}")
        self.stdout.write(f"  collaboration: {collaboration.name} (id {collaboration.pk}, not encrypted)")
        self.stdout.write(f"  researcher:    {RESEARCHER} / {password}  (organization {ORGANIZATIONS[0]})")
        for line in node_key_lines(keys):
            self.stdout.write(line)
        self.stdout.write(
            f"Python client: Client('http://{settings.HOST}', {settings.PORT}, '{settings.API_PATH}')"
            f".authenticate('{RESEARCHER}', '<password>')"
        )
