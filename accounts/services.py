"""Writes on identities: the root account and the audit trail."""

from __future__ import annotations

import secrets

from django.db import transaction

from accounts.catalogue import ROOT
from accounts.models import AuditEntry, Role, User

ROOT_USERNAME = "root"


def audit(principal: object | None, action: str, obj: object | None = None, **data: object) -> None:
    """Record one state-changing action by ``principal`` (None: the system itself)."""
    kind = getattr(principal, "kind", "system")
    AuditEntry.objects.create(
        actor_type=kind,
        actor_id=getattr(principal, "id", None) if kind != "container" else principal.claims.get("node_id"),
        action=action,
        object_type=type(obj).__name__.lower() if obj is not None else "",
        object_id=getattr(obj, "pk", None),
        data=data,
    )


@transaction.atomic
def root_user_ensure(*, password: str = "") -> tuple[User, str | None]:
    """Create organization ``root`` and user ``root`` (role Root) if there is no root user yet.

    Returns the user and, when it was created without a given password, the generated one.
    """
    from collaborations.models import Organization

    user = User.objects.filter(username=ROOT_USERNAME).first()
    if user is not None:
        return user, None
    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(12)
    organization, _ = Organization.objects.get_or_create(name=ROOT_USERNAME)
    user = User.objects.create_user(
        username=ROOT_USERNAME, password=password, email="root@domain.ext", organization=organization
    )
    user.roles.add(Role.objects.get(name=ROOT, is_default_role=True))
    audit(None, "user.create", user, username=ROOT_USERNAME)
    return user, generated
