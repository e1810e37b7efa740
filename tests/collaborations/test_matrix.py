"""The permission matrix of organizations, collaborations, studies and algorithm stores (tests/matrix.py)."""

# ruff: noqa: ARG005 - every path/body/status callable takes the same arguments, used or not

from __future__ import annotations

import pytest

from collaborations.models import AlgorithmStore, Collaboration, Organization, Study
from tests.factories import make_org, make_study
from tests.matrix import (
    ANY_CLIENT,
    OWN,
    PLACES,
    Case,
    Rules,
    deleted_unless_refused,
    list_case,
    matrix_tests,
    members,
    ok_if,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local_stores(settings):
    """The store URL below is on this machine."""
    settings.ALGORITHM_STORE_ALLOW_PRIVATE = True


# No store listens there: a request that passes the gates fails with the store's 404.
STORE_LINK = {"name": "s", "algorithm_store_url": "http://127.0.0.1:9/api", "force": True,
              "server_url": "https://v6.example.org/api"}  # fmt: skip


def place_org(ctx) -> Organization:
    return ctx.org


def place_collab(ctx) -> Collaboration:
    return ctx.collab


def place_study(ctx) -> Study:
    return make_study(ctx.collab, ctx.org, name=f"study-{ctx.place}")


def study_filter_status(r: Rules, name: str, place: str) -> int:
    """rest-api.md §2.11: ``?organization_id=`` is any organization at global and collaboration scope
    and the own one at organization scope; ``?collaboration_id=`` any collaboration at global scope
    and an own one at collaboration and organization scope."""
    scope = r.max_scope("study", "view")
    if scope == "glo" or (scope == "col" and name == "organization_id"):
        return 200
    own = place == OWN if name == "organization_id" else place in members(OWN)
    return ok_if(scope in ("col", "org") and own)


def place_store(ctx) -> AlgorithmStore:
    return AlgorithmStore.objects.create(
        name=f"s-{ctx.place}", url=f"https://{ctx.place}.org/api", collaboration=ctx.collab
    )


def collab_view(r: Rules, place: str) -> bool:
    """Global view, or organization view of a collaboration the caller's organization is in."""
    return r.has("collaboration", "glo", "view") or (
        r.has("collaboration", "org", "view") and place in members(OWN)
    )


def study_allowed(r: Rules, operation: str, place: str) -> bool:
    """The study of ``place`` holds that place's organization and lives in that place's collaboration."""
    return (
        r.has("study", "glo", operation)
        or (r.has("study", "col", operation) and place in members(OWN))
        or (r.has("study", "org", operation) and place == OWN)
    )


CASES = [
    # --- organizations ---------------------------------------------------------------------------------
    list_case(
        "organization", place_org, "/api/organization?per_page=100", lambda r, _: r.places("organization"),
        clients=ANY_CLIENT,
    ),
    Case(
        "organization list by collaboration", "get", "organization", target=place_org,
        path=lambda ctx: f"/api/organization?collaboration_id={ctx.collab.pk}",
        # the members of a collaboration the caller is not in only for who views every collaboration
        status=lambda r, place: ok_if(
            r.can_col("organization", "view", place)
            and (OWN in members(place) or r.has("collaboration", "glo", "view"))
        ),
        rows=lambda r, place: members(place) & r.places("organization"),
        clients=ANY_CLIENT,
    ),
    Case(
        "organization detail", "get", "organization/<pk>", target=place_org,
        path=lambda ctx: f"/api/organization/{ctx.target.pk}",
        status=lambda r, place: ok_if(r.allow_org("organization", "view", place)),
        clients=ANY_CLIENT,
    ),
    Case(
        "organization edit", "patch", "organization/<pk>", target=place_org,
        rules=(("organization", "edit"),),
        path=lambda ctx: f"/api/organization/{ctx.target.pk}", body=lambda ctx: {"country": "NL"},
        # A node changes its organization's public key alone (README: deviations).
        status=lambda r, place: ok_if(r.allow_org("organization", "edit", place) and r.kind == "user"),
        clients=("user", "node"),
    ),
    Case(
        "organization public key", "patch", "organization/<pk>", target=place_org,
        path=lambda ctx: f"/api/organization/{ctx.target.pk}", body=lambda ctx: {"public_key": "AAAA"},
        status=lambda r, place: ok_if(r.allow_org("organization", "edit", place) and place == OWN),
        clients=("user", "node"),
    ),
    Case(
        "organization create", "post", "organization", per_place=False,
        rules=(("organization", "create"),),
        path=lambda ctx: "/api/organization", body=lambda ctx: {"name": "new organization"},
        status=lambda r, _: ok_if(r.has("organization", "glo", "create"), 201),
    ),
    Case(
        "organization delete", "delete", "organization/<pk>", per_place=False,
        rules=(("organization", "delete"),), target=lambda ctx: make_org("victim"),
        path=lambda ctx: f"/api/organization/{ctx.target.pk}",
        status=lambda r, _: ok_if(r.has("organization", "glo", "delete")),
        check=deleted_unless_refused(Organization),
    ),
    # --- collaborations --------------------------------------------------------------------------------
    list_case(
        "collaboration", place_collab, "/api/collaboration",
        lambda r, _: {place for place in PLACES if collab_view(r, place)}, clients=("user", "node"),
    ),
    Case(
        "collaboration detail", "get", "collaboration/<pk>", target=place_collab,
        path=lambda ctx: f"/api/collaboration/{ctx.target.pk}?include=organizations",
        status=lambda r, place: ok_if(collab_view(r, place)),
        clients=ANY_CLIENT,
    ),
    Case(
        "collaboration edit", "patch", "collaboration/<pk>", target=place_collab,
        rules=(("collaboration", "edit"),),
        path=lambda ctx: f"/api/collaboration/{ctx.target.pk}", body=lambda ctx: {"encrypted": True},
        status=lambda r, place: ok_if(r.can_col("collaboration", "edit", place)),
    ),
    Case(
        "collaboration membership edit", "patch", "collaboration/<pk>", target=place_collab,
        path=lambda ctx: f"/api/collaboration/{ctx.target.pk}",
        body=lambda ctx: {"organization_ids": [ctx.org.pk]},
        status=lambda r, place: ok_if(
            r.can_col("collaboration", "edit", place) and r.has("collaboration", "glo", "edit")
        ),
    ),
    Case(
        "collaboration create", "post", "collaboration", per_place=False,
        rules=(("collaboration", "create"),), path=lambda ctx: "/api/collaboration",
        body=lambda ctx: {"name": "new", "organization_ids": [ctx.world.org_a.pk], "encrypted": False},
        status=lambda r, _: ok_if(r.has("collaboration", "glo", "create")),
    ),
    Case(
        "collaboration delete", "delete", "collaboration/<pk>", target=place_collab,
        rules=(("collaboration", "delete"),),
        path=lambda ctx: f"/api/collaboration/{ctx.target.pk}?delete_dependents=1",
        status=lambda r, place: ok_if(r.can_col("collaboration", "delete", place)),
        check=deleted_unless_refused(Collaboration),
    ),
    Case(
        "collaboration add organization", "post", "collaboration/<pk>/organization", target=place_collab,
        path=lambda ctx: f"/api/collaboration/{ctx.target.pk}/organization",
        body=lambda ctx: {"id": ctx.org.pk},
        # a new member would fall within the collaboration-scope rules of the others
        status=lambda r, _: ok_if(r.has("collaboration", "glo", "edit")),
    ),
    Case(
        "collaboration remove organization", "delete", "collaboration/<pk>/organization",
        target=place_collab, path=lambda ctx: f"/api/collaboration/{ctx.target.pk}/organization",
        body=lambda ctx: {"id": ctx.org.pk},
        status=lambda r, place: ok_if(r.can_col("collaboration", "edit", place)),
    ),
    # --- studies ---------------------------------------------------------------------------------------
    list_case(
        "study", place_study, "/api/study",
        lambda r, _: {place for place in PLACES if study_allowed(r, "view", place)}, clients=("user", "node"),
    ),
    Case(
        "study list by organization", "get", "study", target=place_study,
        path=lambda ctx: f"/api/study?organization_id={ctx.org.pk}",
        status=lambda r, place: study_filter_status(r, "organization_id", place),
        rows=lambda r, place: {place} if study_allowed(r, "view", place) else set(),
        clients=("user", "node"),
    ),
    Case(
        "study list by collaboration", "get", "study", target=place_study,
        path=lambda ctx: f"/api/study?collaboration_id={ctx.collab.pk}",
        status=lambda r, place: study_filter_status(r, "collaboration_id", place),
        rows=lambda r, place: {p for p in members(place) if study_allowed(r, "view", p)},
        clients=("user", "node"),
    ),
    Case(
        "study detail", "get", "study/<pk>", target=place_study,
        path=lambda ctx: f"/api/study/{ctx.target.pk}",
        status=lambda r, place: ok_if(study_allowed(r, "view", place)),
        clients=ANY_CLIENT,
    ),
    Case(
        "study edit", "patch", "study/<pk>", target=place_study, rules=(("study", "edit"),),
        path=lambda ctx: f"/api/study/{ctx.target.pk}", body=lambda ctx: {"name": "renamed"},
        status=lambda r, place: ok_if(study_allowed(r, "edit", place)),
    ),
    Case(
        "study delete", "delete", "study/<pk>", target=place_study, rules=(("study", "delete"),),
        path=lambda ctx: f"/api/study/{ctx.target.pk}",
        status=lambda r, place: ok_if(study_allowed(r, "delete", place)),
        check=deleted_unless_refused(Study),
    ),
    Case(
        "study create", "post", "study", rules=(("study", "create"),), path=lambda ctx: "/api/study",
        body=lambda ctx: {"name": "new", "collaboration_id": ctx.collab.pk, "organization_ids": [ctx.org.pk]},
        status=lambda r, place: ok_if(r.can_col("study", "create", place), 201),
    ),
    Case(
        "study add organization", "post", "study/<pk>/organization", target=place_study,
        path=lambda ctx: f"/api/study/{ctx.target.pk}/organization", body=lambda ctx: {"id": ctx.org.pk},
        status=lambda r, place: ok_if(r.can_col("study", "edit", place)),
    ),
    Case(
        "study remove organization", "delete", "study/<pk>/organization", target=place_study,
        path=lambda ctx: f"/api/study/{ctx.target.pk}/organization", body=lambda ctx: {"id": ctx.org.pk},
        status=lambda r, place: ok_if(r.can_col("study", "edit", place)),
    ),
    # --- algorithm stores (collaboration rules) ---------------------------------------------------------
    Case(
        "algorithm store list", "get", "algorithmstore", target=place_store, per_place=False,
        path=lambda ctx: "/api/algorithmstore",
        status=lambda r, _: ok_if(r.max_scope("collaboration", "view") is not None),
        rows=lambda r, _: {place for place in PLACES if collab_view(r, place)},
    ),
    Case(
        "algorithm store detail", "get", "algorithmstore/<pk>", target=place_store,
        path=lambda ctx: f"/api/algorithmstore/{ctx.target.pk}",
        status=lambda r, place: ok_if(collab_view(r, place)),
        clients=("user", "node"),
    ),
    Case(
        "algorithm store edit", "patch", "algorithmstore/<pk>", target=place_store,
        path=lambda ctx: f"/api/algorithmstore/{ctx.target.pk}", body=lambda ctx: {"name": "renamed"},
        status=lambda r, place: ok_if(r.can_col("collaboration", "edit", place)),
    ),
    Case(
        "algorithm store link", "post", "algorithmstore", path=lambda ctx: "/api/algorithmstore",
        body=lambda ctx: {**STORE_LINK, "collaboration_id": ctx.collab.pk},
        status=lambda r, place: 404 if r.can_col("collaboration", "edit", place) else 401,
    ),
    Case(
        "algorithm store link to all collaborations", "post", "algorithmstore", per_place=False,
        path=lambda ctx: "/api/algorithmstore", body=lambda ctx: STORE_LINK,
        status=lambda r, _: 404 if r.has("collaboration", "glo", "edit") else 401,
    ),
    Case(
        "algorithm store delete", "delete", "algorithmstore/<pk>", target=place_store,
        path=lambda ctx: f"/api/algorithmstore/{ctx.target.pk}?server_url={STORE_LINK['server_url']}",
        status=lambda r, place: 404 if r.can_col("collaboration", "edit", place) else 401,
    ),
]  # fmt: skip


(
    test_matrix,
    test_every_endpoint_has_a_case,
    test_every_organization_collaboration_and_study_rule_is_exercised,
) = matrix_tests(CASES, "collaborations.urls", ["organization", "collaboration", "study"])
