"""Reads on organizations, collaborations, studies and algorithm stores."""

from __future__ import annotations

from django.db.models import Q, QuerySet, prefetch_related_objects

from accounts.permissions import Principal, fetch, fetch_in_collaboration, fetch_named, get_for, missing_to
from collaborations.models import AlgorithmStore, Collaboration, Organization, Study
from vantage6.api.lookups import like_filtered
from vantage6.api.sql import CompiledList, PkLookup

# --- organizations -----------------------------------------------------------------------------------
# The pages of the lists, compiled once per shape of the caller's scope.
_organizations = CompiledList(Organization.objects.all)
_collaborations = CompiledList(Collaboration.objects.all)
_studies = CompiledList(Study.objects.all)
_stores = CompiledList(AlgorithmStore.objects.all)


def organization_list(principal: Principal, filters: dict) -> QuerySet[Organization]:
    orgs = principal.visible("organization", _organizations)
    orgs = like_filtered(orgs, filters, "name")
    if country := filters.get("country"):
        orgs = orgs.filter(country=country)
    # An id past the column finds nothing.
    orgs = principal.filtered(orgs, "organization", filters, "collaboration_id", "collaborations__id")
    if (study_id := filters.get("study_id")) is not None:
        missing = f"Study with id={study_id} not found"
        studies = Study.objects.select_related("collaboration")
        study = fetch_named(principal, studies, study_id, missing=missing, through="collaboration")
        principal.require(principal.reaches("organization", "view", collaboration_id=study.collaboration_id))
        orgs = orgs.filter(studies=study.pk)
    if ids := filters.get("ids"):
        orgs = orgs.filter(id__in=ids)
    return orgs


# One row by primary key, on every request of the detail endpoints: compiled once per connection.
_organization = PkLookup(Organization.objects.all)
_collaboration = PkLookup(Collaboration.objects.all)


def organization_get(
    principal: Principal, pk: int | str, operation: str | None = "view", *, fields: dict | None = None
) -> Organization:
    """The organization, or its 404; checked for ``operation`` (an edit of ``fields``) unless it is None
    (the caller judges)."""
    return get_for(
        principal, _organization, pk, operation, missing=f"Organization with id={pk} not found", fields=fields
    )


# --- collaborations ----------------------------------------------------------------------------------
def _with_organizations(queryset: QuerySet, include: bool) -> QuerySet:
    return queryset.prefetch_related("organizations") if include else queryset


def collaboration_list(
    principal: Principal, filters: dict, *, include_organizations: bool = False
) -> QuerySet[Collaboration]:
    # ``include=organizations`` shows the members as GET /organization does: judged by the organization
    # rules, as ``?collaboration_id=`` there is.
    collabs = principal.visible(
        "collaboration", _collaborations, with_embedded="organization" if include_organizations else None
    )
    collabs = like_filtered(collabs, filters, "name")
    if (encrypted := filters.get("encrypted")) is not None:
        collabs = collabs.filter(encrypted=encrypted)
    collabs = principal.filtered(collabs, "collaboration", filters, "organization_id", "organizations")
    if (store_id := filters.get("algorithm_store_id")) is not None:
        # A store the caller may not view is the 401 of one that does not exist: the list, empty or
        # not, would tell which ids name stores of other collaborations.
        missing = f"Algorithm store with id={store_id} not found"
        store = fetch_named(principal, AlgorithmStore.objects.all(), store_id, missing=missing)
        if store.collaboration_id is not None:
            collabs = collabs.filter(pk=store.collaboration_id)
    return _with_organizations(collabs, include_organizations)


def collaboration_get(
    principal: Principal, pk: int | str, *, include_organizations: bool = False
) -> Collaboration:
    collaboration = get_for(principal, _collaboration, pk, missing=f"Collaboration with id={pk} not found")
    if include_organizations:
        principal.require(principal.shows_embedded("collaboration", "organization", collaboration))
        prefetch_related_objects([collaboration], "organizations")
    return collaboration


def collaboration_named(principal: Principal, pk: int, resource: str, operation: str) -> Collaboration:
    """The collaboration a request body names, to ``operation`` on ``resource`` in it: the caller views
    it or may do that there (``fetch_in_collaboration``)."""
    return fetch_in_collaboration(
        principal,
        Collaboration.objects.all(),
        pk,
        resource=resource,
        operation=operation,
        missing=f"Collaboration with id={pk} not found",
    )


def collaboration_for_edit(principal: Principal, pk: int | str, operation: str = "edit") -> Collaboration:
    return get_for(
        principal, Collaboration.objects.all(), pk, operation, missing=f"Collaboration with id={pk} not found"
    )


# --- studies -----------------------------------------------------------------------------------------
def study_list(
    principal: Principal, filters: dict, *, include_organizations: bool = False
) -> QuerySet[Study]:
    studies = principal.visible(
        "study", _studies, with_embedded="organization" if include_organizations else None
    )
    studies = like_filtered(studies, filters, "name")
    # an id past the column finds nothing
    studies = principal.filtered(studies, "study", filters, "organization_id", "organizations__id")
    studies = principal.filtered(studies, "study", filters, "collaboration_id")
    return _with_organizations(studies, include_organizations)


def study_get(
    principal: Principal, pk: int | str, operation: str = "view", *, include_organizations: bool = False
) -> Study:
    queryset = _with_organizations(Study.objects.all(), include_organizations)
    study = get_for(principal, queryset, pk, operation, missing=f"Study with id={pk} not found")
    if include_organizations:
        principal.require(principal.shows_embedded("study", "organization", study))
    return study


def study_for_member_change(principal: Principal, pk: int | str) -> Study:
    """A study whose organizations the caller may change: CAN_COL(study.edit) on its collaboration."""
    study = fetch(Study.objects.select_related("collaboration"), pk, missing=f"Study with id={pk} not found")
    principal.require(principal.reaches("study", "edit", collaboration_id=study.collaboration_id))
    return study


# --- algorithm stores --------------------------------------------------------------------------------
def algorithm_store_list(principal: Principal, filters: dict) -> QuerySet[AlgorithmStore]:
    stores = principal.visible("algorithmstore", _stores)
    stores = like_filtered(stores, filters, "name", "url")
    if (collaboration_id := filters.get("collaboration_id")) is not None:
        fetch(
            Collaboration.objects.all(),
            collaboration_id,
            missing=missing_to(
                principal, "collaboration", f"Collaboration with id={collaboration_id} not found"
            ),
        )
        principal.require(principal.reaches("algorithmstore", "view", collaboration_id=collaboration_id))
        stores = stores.filter(Q(collaboration_id=collaboration_id) | Q(collaboration__isnull=True))
    return stores


def algorithm_store_get(
    principal: Principal, pk: int | str, operation: str | None = "view"
) -> AlgorithmStore:
    """The store, or its 404; checked for ``operation`` unless it is None (the caller judges)."""
    return get_for(
        principal,
        AlgorithmStore.objects.all(),
        pk,
        operation,
        missing=f"Algorithm store with id={pk} not found",
    )
