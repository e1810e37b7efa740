"""Writes on organizations, collaborations, studies and algorithm stores.

Permission checks that depend on the body are made here; the object itself was fetched (404) and
judged (401), with the fields an edit changes (``Scope.node_writes_fields``, ``own_organization_fields``),
by the selectors.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.db import transaction
from django.db.models import Model

from accounts.audit import audit
from accounts.permissions import GLO, Principal
from accounts.signals import rights_changed
from collaborations import store_client
from collaborations.models import AlgorithmStore, Collaboration, Organization, Study
from collaborations.selectors import collaboration_named, organization_get
from vantage6.api.errors import bad_request

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


def _require_unique_name(model: type[Model], name: str, label: str, exclude_pk: int | None = None) -> None:
    clash = model._default_manager.filter(name=name)
    if exclude_pk is not None:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise bad_request(f"{label} with name '{name}' already exists!")


def _dependents_message(label: str, counts: dict[str, int]) -> str:
    found = ", ".join(f"{count} {name}" for name, count in counts.items() if count)
    return (
        f"{label} has dependents ({found}). Set delete_dependents=true to delete them as well, "
        "or delete them first."
    )


def _require_no_dependents(label: str, counts: dict[str, int], delete_dependents: bool) -> None:
    if any(counts.values()) and not delete_dependents:
        raise bad_request(_dependents_message(label, counts))


# --- organizations -----------------------------------------------------------------------------------
@transaction.atomic
def organization_create(*, principal: Principal, data: dict) -> Organization:
    principal.require(principal.has("organization", GLO, "create"))
    _require_unique_name(Organization, data["name"], "Organization")
    public_key = data.pop("public_key", None)
    organization = Organization(**data, public_key_bytes=public_key or None)
    organization.save()
    audit(principal, "organization.create", organization)
    return organization


@transaction.atomic
def organization_update(*, principal: Principal, organization: Organization, data: dict) -> Organization:
    if "public_key" in data:
        organization.public_key_bytes = data.pop("public_key") or None
    if "name" in data:
        _require_unique_name(Organization, data["name"], "Organization", exclude_pk=organization.pk)
    for key, value in data.items():
        setattr(organization, key, value)
    organization.save()
    audit(principal, "organization.edit", organization, fields=sorted(data))
    return organization


@transaction.atomic
def organization_delete(*, principal: Principal, organization: Organization, delete_dependents: bool) -> None:
    principal.require(principal.has("organization", GLO, "delete"))
    if organization.pk == principal.organization_id:
        raise bad_request("You cannot delete your own organization!")
    counts = {
        "runs": organization.runs.count(),
        "tasks": organization.initiated_tasks.count(),
        "nodes": organization.nodes.count(),
        "users": organization.users.count(),
        "roles": organization.roles.count(),
    }
    _require_no_dependents(f"Organization id={organization.pk}", counts, delete_dependents)
    audit(principal, "organization.delete", organization, name=organization.name)
    # Runs, tasks, nodes, users and roles cascade; memberships of collaborations and studies go too.
    organization.delete()


# --- collaborations ----------------------------------------------------------------------------------
def _remove_members(collaboration: Collaboration, organization_ids: set[int]) -> None:
    """Take organizations out of a collaboration and out of its studies, which only hold members."""
    collaboration.organizations.remove(*organization_ids)
    Study.organizations.through.objects.filter(
        study__collaboration=collaboration, organization_id__in=organization_ids
    ).delete()


@transaction.atomic
def collaboration_create(
    *, principal: Principal, name: str, organization_ids: list[int], encrypted: bool
) -> Collaboration:
    principal.require(principal.has("collaboration", GLO, "create"))
    _require_unique_name(Collaboration, name, "Collaboration")
    collaboration = Collaboration.objects.create(name=name, encrypted=encrypted)
    # Unknown organization ids are left out, as in vantage6.
    collaboration.organizations.set(Organization.objects.filter(pk__in=organization_ids))
    rights_changed.send(sender=Collaboration, organizations=organization_ids, collaborations=True)
    audit(principal, "collaboration.create", collaboration)
    return collaboration


@transaction.atomic
def collaboration_update(*, principal: Principal, collaboration: Collaboration, data: dict) -> Collaboration:
    if "organization_ids" in data:
        principal.require(principal.may_add_members())
        wanted = set(
            Organization.objects.filter(pk__in=data["organization_ids"]).values_list("pk", flat=True)
        )
        current = set(collaboration.organizations.values_list("pk", flat=True))
        collaboration.organizations.add(*(wanted - current))
        _remove_members(collaboration, current - wanted)
        rights_changed.send(sender=Collaboration, organizations=wanted ^ current)
    if "name" in data:
        _require_unique_name(Collaboration, data["name"], "Collaboration", exclude_pk=collaboration.pk)
        collaboration.name = data["name"]
    if "encrypted" in data:
        collaboration.encrypted = data["encrypted"]
    collaboration.save()
    audit(principal, "collaboration.edit", collaboration, fields=sorted(data))
    return collaboration


@transaction.atomic
def collaboration_delete(
    *, principal: Principal, collaboration: Collaboration, delete_dependents: bool
) -> None:
    counts = {
        "tasks": collaboration.tasks.count(),
        "nodes": collaboration.nodes.count(),
        "studies": collaboration.studies.count(),
    }
    _require_no_dependents(f"Collaboration id={collaboration.pk}", counts, delete_dependents)
    audit(principal, "collaboration.delete", collaboration, name=collaboration.name)
    members = collaboration.organizations.values_list("pk", flat=True)
    rights_changed.send(sender=Collaboration, organizations=list(members), collaborations=True)
    # Tasks (with their runs), nodes, studies and the collaboration's algorithm-store links cascade.
    collaboration.delete()


@transaction.atomic
def collaboration_organization_add(
    *, principal: Principal, collaboration: Collaboration, organization_id: int
) -> None:
    principal.require(principal.may_add_members())
    organization = organization_get(principal, organization_id, None)
    collaboration.organizations.add(organization)
    rights_changed.send(sender=Collaboration, organizations=[organization.pk])
    audit(principal, "collaboration.edit", collaboration, added_organization=organization.pk)


@transaction.atomic
def collaboration_organization_remove(
    *, principal: Principal, collaboration: Collaboration, organization_id: int
) -> None:
    organization = organization_get(principal, organization_id, None)
    if not collaboration.organizations.filter(pk=organization.pk).exists():
        raise bad_request(
            f"Organization id={organization.pk} is not part of collaboration id={collaboration.pk}"
        )
    _remove_members(collaboration, {organization.pk})
    rights_changed.send(sender=Collaboration, organizations=[organization.pk])
    audit(principal, "collaboration.edit", collaboration, removed_organization=organization.pk)


# --- studies -----------------------------------------------------------------------------------------
def _study_members(collaboration: Collaboration, organization_ids: list[int]) -> list[int]:
    members = set(collaboration.organizations.filter(pk__in=organization_ids).values_list("pk", flat=True))
    if outsiders := sorted(set(organization_ids) - members):
        raise bad_request(
            f"Organization(s) {outsiders} are not part of collaboration id={collaboration.pk}; "
            "a study can only contain members of its collaboration."
        )
    return organization_ids


@transaction.atomic
def study_create(
    *, principal: Principal, name: str, collaboration_id: int, organization_ids: list[int]
) -> Study:
    collaboration = collaboration_named(principal, collaboration_id, "study", "create")
    principal.require(principal.reaches("study", "create", collaboration_id=collaboration.pk))
    _require_unique_name(Study, name, "Study")
    members = _study_members(collaboration, organization_ids)
    study = Study.objects.create(name=name, collaboration=collaboration)
    study.organizations.set(members)
    audit(principal, "study.create", study)
    return study


@transaction.atomic
def study_update(*, principal: Principal, study: Study, data: dict) -> Study:
    members = data.get("organization_ids")
    if members is not None and set(members) != set(study.organizations.values_list("pk", flat=True)):
        # As the /organization sub-endpoints: organization scope may rename a study, not pick its members.
        principal.require(principal.reaches("study", "edit", collaboration_id=study.collaboration_id))
    if "name" in data:
        _require_unique_name(Study, data["name"], "Study", exclude_pk=study.pk)
        study.name = data["name"]
        study.save(update_fields=["name"])
    if members is not None:
        study.organizations.set(_study_members(study.collaboration, members))
    audit(principal, "study.edit", study, fields=sorted(data))
    return study


@transaction.atomic
def study_delete(*, principal: Principal, study: Study, delete_dependents: bool) -> None:
    tasks = study.tasks.all()
    count = tasks.count()
    _require_no_dependents(f"Study id={study.pk}", {"tasks": count}, delete_dependents)
    # Its tasks go with it only where the caller may delete each (DELETE /task, which takes a task's
    # subtasks along): study rules reach the tasks other organizations' researchers ran in it.
    if count:
        jobs = tasks.exclude(parent__study=study)
        deletable = principal.visible("task", jobs, "delete").values("pk")
        principal.require(
            not jobs.exclude(pk__in=deletable).exists(), f"Study id={study.pk} has tasks you may not delete"
        )
    audit(principal, "study.delete", study, name=study.name)
    study.delete()


@transaction.atomic
def study_organization_add(*, principal: Principal, study: Study, organization_id: int) -> None:
    organization = organization_get(principal, organization_id, None)
    _study_members(study.collaboration, [organization.pk])
    study.organizations.add(organization)
    audit(principal, "study.edit", study, added_organization=organization.pk)


@transaction.atomic
def study_organization_remove(*, principal: Principal, study: Study, organization_id: int) -> None:
    organization = organization_get(principal, organization_id, None)
    if not study.organizations.filter(pk=organization.pk).exists():
        raise bad_request(f"Organization id={organization.pk} is not part of study id={study.pk}")
    study.organizations.remove(organization)
    audit(principal, "study.edit", study, removed_organization=organization.pk)


# --- algorithm stores --------------------------------------------------------------------------------
def _require_store_edit(principal: Principal, collaboration_id: int | None) -> None:
    """Links to one collaboration need CAN_COL(collaboration.edit); links to all need global edit."""
    if collaboration_id is None:
        principal.require(principal.has("collaboration", GLO, "edit"))
    else:
        principal.require(principal.reaches("collaboration", "edit", collaboration_id=collaboration_id))


def _require_new_link(principal: Principal, collaboration_id: int | None) -> None:
    """A link a request body asks for: to a collaboration the caller may name, and edit."""
    if collaboration_id is not None:
        collaboration_named(principal, collaboration_id, "collaboration", "edit")
    _require_store_edit(principal, collaboration_id)


def _check_link_is_new(url: str, collaboration_id: int | None, exclude_pk: int | None = None) -> None:
    links = AlgorithmStore.objects.filter(url=url)
    if exclude_pk is not None:
        links = links.exclude(pk=exclude_pk)
    if links.filter(collaboration__isnull=True).exists():
        raise bad_request(f"Algorithm store '{url}' is already available to all collaborations.")
    if collaboration_id is not None and links.filter(collaboration_id=collaboration_id).exists():
        raise bad_request(
            f"Algorithm store '{url}' is already available to collaboration id={collaboration_id}."
        )


def algorithm_store_create(
    *,
    principal: Principal,
    name: str,
    url: str,
    collaboration_id: int | None,
    server_url: str | None,
    force: bool,
    authorization: str | None,
) -> AlgorithmStore:
    """Link a store to a collaboration (or to all) after registering this server at the store."""
    _require_new_link(principal, collaboration_id)
    url = url.rstrip("/")
    _check_link_is_new(url, collaboration_id)
    if not force and (urlsplit(url).hostname or "").lower() in LOCAL_HOSTS:
        raise bad_request(
            "Algorithm store URLs on localhost are only accepted with force=true: other machines, such "
            "as the nodes, cannot reach them."
        )
    store_client.register_server(
        store_url=url,
        server_url=store_client.this_server_url(server_url),
        force=force,
        authorization=authorization,
        caller=principal,
    )
    with transaction.atomic():
        if collaboration_id is None:
            # The store is now available to all collaborations: the single links are redundant.
            AlgorithmStore.objects.filter(url=url).delete()
        store = AlgorithmStore.objects.create(
            name=name,
            url=url,
            collaboration_id=collaboration_id,
            trusted=principal.has("collaboration", GLO, "edit"),
        )
        audit(principal, "algorithmstore.create", store, url=url)
    return store


@transaction.atomic
def algorithm_store_update(*, principal: Principal, store: AlgorithmStore, data: dict) -> AlgorithmStore:
    _require_store_edit(principal, store.collaboration_id)
    if "collaboration_id" in data:
        collaboration_id = data["collaboration_id"]
        _require_new_link(principal, collaboration_id)
        _check_link_is_new(store.url, collaboration_id, exclude_pk=store.pk)
        if collaboration_id is None:
            AlgorithmStore.objects.filter(url=store.url).exclude(pk=store.pk).delete()
            store.trusted = True  # a global administrator made it available to all collaborations
        store.collaboration_id = collaboration_id
    if "name" in data:
        store.name = data["name"]
    store.save()
    audit(principal, "algorithmstore.edit", store, fields=sorted(data))
    return store


def algorithm_store_delete(
    *, principal: Principal, store: AlgorithmStore, server_url: str | None, authorization: str | None
) -> None:
    """Remove this server from the store and delete every link to that store's URL."""
    _require_store_edit(principal, store.collaboration_id)
    links = AlgorithmStore.objects.filter(url=store.url)
    if links.exclude(pk=store.pk).exists():
        # The URL is linked to other collaborations too, and all links go.
        principal.require(principal.has("collaboration", GLO, "edit"))
    store_client.unregister_server(
        store_url=store.url,
        server_url=store_client.this_server_url(server_url),
        authorization=store_client.user_authorization(store, authorization),
        caller=principal,
    )
    with transaction.atomic():
        audit(principal, "algorithmstore.delete", store, url=store.url)
        # Tasks that used the store keep existing without it (SET_NULL).
        links.delete()
