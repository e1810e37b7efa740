"""Shared fixtures: an API client, and a small world of three organizations.

``world`` has organization A (own) and B sharing collaboration AB, and C (outsider) alone in
collaboration C; each organization has a node in its collaborations.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.db import connection
from rest_framework.test import APIClient

from tests import factories, parallel
from tests.ops import services
from vantage6.db.postgresql.base import Cursor

SERVICES_REQUIRED = bool(os.environ.get("V6_REQUIRE_SERVICES"))


# Several workers (tests/parallel.py): each on a RabbitMQ vhost of its own.
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    return parallel.auto_count(config)


def pytest_xdist_setupnodes(config: pytest.Config, specs: list) -> None:
    parallel.prepare(config, len(specs))


def pytest_configure_node(node) -> None:
    parallel.assign(node)


def pytest_testnodedown(node) -> None:
    parallel.release(node)


def pytest_configure(config: pytest.Config) -> None:
    parallel.configure_worker(config)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    parallel.group(config, items)


@pytest.fixture(scope="session", autouse=True)
def _release_test_database(django_db_setup, django_db_blocker):  # noqa: ARG001 - orders the teardown
    """End connections other threads still hold, so PostgreSQL can drop the test database.

    Async tests, socket consumers and the event publisher use the database from their own threads;
    their connections would otherwise make the drop fail ("being accessed by other users").
    """
    yield
    if connection.vendor == "postgresql":
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.BCRYPT_ROUNDS = 4


@pytest.fixture(autouse=True)
def _last_seen_noted_per_test():
    """Rolled-back rows give their ids again (SQLite): this process's note of when it last wrote an
    identity's ``last_seen`` would keep a later test's identity of the same id from having it written."""
    from accounts import authentication

    authentication._seen_written.clear()


@pytest.fixture(autouse=True)
def _mail_stays_in_its_test():
    """E-mail leaves after the answer: wait for it, so that it never lands in a later test's outbox."""
    yield
    from accounts import mail

    mail.wait_sent()


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[services.PrivateService]:
    """The PostgreSQL of the deployment tests (tests/ops/services.py), started at its first use."""
    with services.shared("postgres") as postgres:
        yield postgres


@pytest.fixture(scope="session")
def private_rabbitmq() -> Iterator[services.PrivateService]:
    """The RabbitMQ of the deployment tests (tests/ops/services.py), started at its first use."""
    with services.shared("rabbitmq") as rabbitmq:
        yield rabbitmq


@pytest.fixture(autouse=True)
def _private_services_run_after_the_test():
    """A test that stopped a private service, and failed before starting it again, leaves the next ones
    a whole deployment."""
    yield
    services.start_stopped()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@dataclass
class World:
    org_a: object
    org_b: object
    org_c: object
    collab_ab: object
    collab_c: object
    node_a: object
    node_b: object
    node_c: object
    keys: dict


@pytest.fixture
def world(db) -> World:  # noqa: ARG001 - needs the database
    org_a, org_b, org_c = factories.make_org("A"), factories.make_org("B"), factories.make_org("C")
    collab_ab = factories.make_collab(org_a, org_b, name="AB")
    collab_c = factories.make_collab(org_c, name="C")
    node_a, key_a = factories.make_node(org_a, collab_ab, "node-a")
    node_b, key_b = factories.make_node(org_b, collab_ab, "node-b")
    node_c, key_c = factories.make_node(org_c, collab_c, "node-c")
    return World(
        org_a, org_b, org_c, collab_ab, collab_c, node_a, node_b, node_c,
        keys={node_a.pk: key_a, node_b.pk: key_b, node_c.pk: key_c},
    )  # fmt: skip


def requires_services(*names: str) -> pytest.MarkDecorator:
    """Skip unless the named services (``postgres``, ``rabbitmq``, ``chromium``) are available.

    With ``V6_REQUIRE_SERVICES`` set (CI), a missing service fails the test instead.
    """
    missing = []
    if "postgres" in names and not os.environ.get("V6_DATABASE_URL", "").startswith("postgres"):
        missing.append("PostgreSQL (V6_DATABASE_URL)")
    if "rabbitmq" in names and not os.environ.get("V6_RABBITMQ_URI"):
        missing.append("RabbitMQ (V6_RABBITMQ_URI)")
    if "chromium" in names and shutil.which("chromium") is None:
        missing.append("a headless browser (chromium)")
    if missing and SERVICES_REQUIRED:
        pytest.fail(f"required services are not configured: {', '.join(missing)}", pytrace=False)
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")


@pytest.fixture
def sent() -> list[str]:
    """The query strings sent on the test thread's PostgreSQL connection (one a round trip), Django's
    checks and transaction control included (they bypass Django's cursor and its query log)."""
    statements: list[str] = []

    class Recording(Cursor):
        def send(self, query, vars):
            statements.append(query if isinstance(query, str) else query.decode())
            return super().send(query, vars)

    connection.close()  # a new connection: none of the suite's earlier tests reaches its maximum age
    connection.ensure_connection()
    connection.connection.cursor_factory = Recording
    return statements
