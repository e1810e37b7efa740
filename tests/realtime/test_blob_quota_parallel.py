"""Parallel uploads of one organization against a real server on PostgreSQL: together they stay within
the organization's bound (``V6_BLOB_QUOTA_MB``), not a chunk per upload beyond it."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db.models import Sum

from collaborations.models import Organization
from tasks.blobs import CHUNK_SIZE
from tasks.models import Blob
from tests.conftest import requires_services
from tests.realtime.helpers import make_user, token_pair
from tests.realtime.live import LIVE, Daphne

pytestmark = [pytest.mark.live, requires_services("postgres")]

QUOTA_MB = 4
UPLOADS = 24
EMPTY_BLOBS = 100_000


@pytest.fixture(scope="module")
def server(live_db, live_folder):
    env = {"V6_LARGE_RESULT_STORE": str(live_folder / "blobs"), "V6_BLOB_QUOTA_MB": str(QUOTA_MB)}
    daphne = Daphne(live_db.process_env(**env), live_folder)
    yield daphne
    daphne.show_log()
    daphne.stop()


def test_parallel_uploads_stay_within_the_bound(server, live_data):  # noqa: ARG001 - the live database
    organization = Organization.objects.using(LIVE).create(name=f"org-{uuid.uuid4().hex[:8]}")
    access, _ = token_pair(make_user(organization, roles=("Researcher",)))
    # Many empty blobs: the organization's sum takes a while, and parallel counts overlap for sure.
    empty = (Blob(name=str(uuid.uuid4()), organization_id=organization.pk) for _ in range(EMPTY_BLOBS))
    Blob.objects.using(LIVE).bulk_create(empty, batch_size=5000)
    start = threading.Barrier(UPLOADS)

    def upload(_: int) -> int:
        start.wait()
        response = requests.post(
            f"{server.url}/api/blobstream",
            data=b"x" * CHUNK_SIZE,  # one chunk each: each upload is one step of the count
            headers={"Authorization": f"Bearer {access}", "Content-Type": "application/octet-stream"},
            timeout=60,
        )
        return response.status_code

    for _round in range(3):
        with ThreadPoolExecutor(UPLOADS) as pool:
            statuses = list(pool.map(upload, range(UPLOADS)))
        assert set(statuses) <= {201, 413}, statuses
        held = Blob.objects.using(LIVE).filter(organization_id=organization.pk)
        assert held.aggregate(total=Sum("size"))["total"] <= QUOTA_MB * 2**20
        assert held.exclude(size=0).count() == QUOTA_MB
