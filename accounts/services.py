"""Writes on identities: users, roles and the root account."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts import mail
from accounts.audit import audit
from accounts.catalogue import ROOT, ROOT_USERNAME
from accounts.models import Role, Rule, User
from accounts.permissions import Principal, missing_to, organizations
from accounts.sessions import end_all_logins, end_other_logins
from accounts.signals import rights_changed
from vantage6.api.errors import bad_request, not_found, unauthorized


def _organization_must_exist(organization_id: int) -> None:
    if not organizations().filter(pk=organization_id).exists():
        raise not_found(f"Organization id={organization_id} not found!")


class RootEnsured(NamedTuple):
    """What ``root_user_ensure`` found or made: the root user, whether this call created it, and the
    password it generated for it (None unless created without a given password)."""

    user: User
    created: bool
    generated_password: str | None


@transaction.atomic
def root_user_ensure(*, password: str = "", password_hash: str = "") -> RootEnsured:
    """Create organization ``root`` and user ``root`` (role Root) if there is no root user yet, with
    ``password`` or the bcrypt ``password_hash``. One lookup of root: callers learn from the result
    whether it was there."""
    user = User.objects.filter(username=ROOT_USERNAME).first()
    if user is not None:
        return RootEnsured(user, created=False, generated_password=None)
    generated = None
    if not password and not password_hash:
        password = generated = secrets.token_urlsafe(12)
    organization, _ = organizations().get_or_create(name=ROOT_USERNAME)
    email = "root@domain.ext"
    if User.objects.filter(email=email).exists():  # a root that renamed itself kept it: a start must not fail
        email = f"root-{secrets.token_hex(4)}@domain.ext"
    user = User.objects.create_user(
        username=ROOT_USERNAME, password=password or None, email=email, organization=organization
    )
    if password_hash:
        user.password = password_hash
        user.save(update_fields=["password"])
    user.roles.add(Role.objects.get(name=ROOT, is_default_role=True))
    audit(None, "user.create", user, username=ROOT_USERNAME)
    return RootEnsured(user, created=True, generated_password=generated)


@transaction.atomic
def root_password_reset(*, password: str) -> bool:
    """Create root with ``password``, or give the existing root this password, clear its failed login
    attempts (lifting a lock-out) and give back the Root role. True when root was created."""
    root = root_user_ensure(password=password)
    if root.created:
        return True
    user = root.user
    user.set_password(password)
    user.failed_login_attempts = 0
    user.last_login_attempt = None
    user.save(update_fields=["password", "failed_login_attempts", "last_login_attempt"])
    end_all_logins(user.pk)
    user.roles.add(Role.objects.get(name=ROOT, is_default_role=True))
    audit(None, "user.password_reset", user)
    return False


# --- shared guards ----------------------------------------------------------------------------------
def _triples(rules: Iterable[Rule]) -> list[tuple[str, str, str]]:
    return [(rule.name, rule.scope, rule.operation) for rule in rules]


def _by_ids(
    queryset: QuerySet, ids: Iterable[int], *, strict: bool, label: str, principal: Principal | None = None
) -> list:
    """The rows with these ids; with ``strict`` an unknown id is a 404, otherwise it is skipped. With
    ``principal``, rows it may not view are unknown, and unknown is its 401 (``fetch_named``)."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        return []
    resource = str(queryset.model._meta.model_name)
    if principal is not None:
        queryset = principal.visible(resource, queryset)
    found = {row.pk: row for row in queryset.filter(pk__in=ids)}
    if strict:
        for pk in ids:
            if pk not in found:
                missing = f"{label} with id={pk} not found!"
                raise (
                    missing_to(principal, resource, missing) if principal is not None else not_found(missing)
                )
    return [found[pk] for pk in ids if pk in found]


def _roles(principal: Principal, ids: Iterable[int], *, strict: bool) -> list[Role]:
    queryset = Role.objects.prefetch_related("rules")
    return _by_ids(queryset, ids, strict=strict, label="Role", principal=principal)


def _rules(ids: Iterable[int], *, strict: bool) -> list[Rule]:
    return _by_ids(Rule.objects.all(), ids, strict=strict, label="Rule")


def _require_assignable(principal: Principal, roles: Iterable[Role], organization_id: int) -> None:
    """Roles given to a user must be built-in or of the user's organization, and be held by the giver."""
    roles = list(roles)
    for role in roles:
        if role.organization_id not in (None, organization_id):
            raise unauthorized(
                f"Role '{role.name}' (id={role.pk}) belongs to another organization than the user"
            )
    principal.require_holds(
        (triple for role in roles for triple in _triples(role.rules.all())), organization_id
    )


def _require_not_reserved(username: str) -> None:
    # ``createroot`` gives the account of this name the Root role and a password back: once root is gone
    # or renamed, another account of that name would be made root.
    if username == ROOT_USERNAME:
        raise bad_request(f"Username '{ROOT_USERNAME}' is reserved for the root user")


def _require_not_default(role: Role) -> None:
    if role.is_default_role:
        raise bad_request(f"Role '{role.name}' is a default role and cannot be changed or deleted")


# --- users ------------------------------------------------------------------------------------------
@transaction.atomic
def user_create(
    *,
    principal: Principal,
    username: str,
    email: str,
    password: str,
    firstname: str = "",
    lastname: str = "",
    organization_id: int | None = None,
    role_ids: Iterable[int] = (),
    rule_ids: Iterable[int] = (),
) -> User:
    """A new user; unknown role and rule ids are skipped, as in vantage6."""
    organization_id = organization_id or principal.organization_id
    principal.require_reaches("user", "create", organization_id=organization_id)
    _organization_must_exist(organization_id)
    _require_not_reserved(username)
    if User.objects.filter(username=username).exists():
        raise bad_request("username already exists.")
    if User.objects.filter(email=email).exists():
        raise bad_request("email already exists.")
    roles, rules = _roles(principal, role_ids, strict=False), _rules(rule_ids, strict=False)
    _require_assignable(principal, roles, organization_id)
    principal.require_holds(_triples(rules), organization_id)
    user = User.objects.create_user(
        username=username,
        password=password,
        email=email,
        firstname=firstname or "",
        lastname=lastname or "",
        organization_id=organization_id,
    )
    user.roles.set(roles)
    user.rules.set(rules)
    audit(principal, "user.create", user, username=username)
    return user


def _touches_account(user: User, data: dict) -> bool:
    """Whether an update changes what hold-what-you-target guards: the login name, the e-mail (the
    way to password recovery), the organization, the roles or the rules."""
    changed = any(
        name in data and data[name] != getattr(user, name)
        for name in ("username", "email", "organization_id")
    )
    return changed or "roles" in data or "rules" in data


@transaction.atomic
def user_update(*, principal: Principal, user: User, data: dict, current_login: str | None = None) -> User:
    """Apply a partial update; ``roles``/``rules`` replace the sets (unknown ids are a 404).
    ``current_login``: the caller's login (its token's ``sid``), which a change of one's own e-mail
    address leaves in place."""
    principal.require_allows("user", user, "edit")
    if _touches_account(user, data):
        principal.require_holds_target(user)
    is_self = user.pk == principal.id
    if is_self and ("roles" in data or "rules" in data):
        raise unauthorized("You cannot change your own roles or rules")

    if data.get("organization_id", user.organization_id) != user.organization_id:
        _move_user(principal, user, data["organization_id"], data.get("roles"))
    if "username" in data and data["username"] != user.username:
        if not is_self:
            raise bad_request("You cannot change the username of another user")
        _require_not_reserved(data["username"])
        if User.objects.filter(username=data["username"]).exclude(pk=user.pk).exists():
            raise bad_request("username already exists.")
        user.username = data["username"]
    old_email = user.email
    if "email" in data and data["email"] != user.email:
        if User.objects.filter(email=data["email"]).exclude(pk=user.pk).exists():
            raise bad_request("email already exists.")
        user.email = data["email"]
    for name in ("firstname", "lastname"):
        if name in data:
            setattr(user, name, data[name] or "")
    # The fields asked for only: a request that loaded the user before another's change (a recovery
    # hold, say) must not write back what it loaded.
    fields = [name for name in ("username", "email", "firstname", "lastname") if name in data]
    user.save(update_fields=fields + (["organization"] if "organization_id" in data else []))

    if "roles" in data:
        new = _roles(principal, data["roles"], strict=True)
        old_ids = set(user.roles.values_list("pk", flat=True))
        _require_assignable(principal, [role for role in new if role.pk not in old_ids], user.organization_id)
        user.roles.set(new)  # what is removed is held: the caller holds every rule of the user
    if "rules" in data:
        new_rules = set(_rules(data["rules"], strict=True))
        principal.require_holds(_triples(new_rules - set(user.rules.all())), user.organization_id)
        user.rules.set(new_rules)
    # Last: the mail it sends must not go out for an update refused after all.
    if user.email != old_email:
        _email_changed(user, old_email, by_owner=is_self, current_login=current_login)
    if data.keys() & {"roles", "rules", "organization_id"}:
        rights_changed.send(sender=User, identities=[user.pk])
    audit(principal, "user.update", user, fields=sorted(data))
    return user


def _email_changed(user: User, old_email: str, *, by_owner: bool, current_login: str | None) -> None:
    """What follows a change of ``user``'s e-mail address, the way to password recovery.

    The owner needs only an access token for it, and a stolen one would otherwise become the account
    for good (new address, recovery, new password): so the owner's other logins end, as at a password
    change, and recovery by e-mail waits EMAIL_CHANGE_RECOVERY_HOLD_HOURS, answered as for an unknown
    account. The old address is told, so its owner can have an administrator put it back; an
    administrator's change lifts a hold.
    """
    hold = timedelta(hours=settings.EMAIL_CHANGE_RECOVERY_HOLD_HOURS)
    held_until = timezone.now() + hold if by_owner and hold else None
    User.objects.filter(pk=user.pk).update(recovery_held_until=held_until)
    user.recovery_held_until = held_until
    if by_owner:
        end_other_logins(user.pk, keep=current_login)
    if settings.SMTP_CONFIGURED:
        # Once committed: the admin site runs a change once to check it and rolls that back, and a form
        # may be refused after the address (one's own password, say).
        text = _email_changed_text(user, by_owner)
        transaction.on_commit(lambda: mail.send_later(old_email, "E-mail address changed on vantage6", text))


def _email_changed_text(user: User, by_owner: bool) -> str:
    what_now = ""
    if by_owner:
        what_now = "Every other login of the account has ended.\n"
        if hours := settings.EMAIL_CHANGE_RECOVERY_HOLD_HOURS:
            what_now += f"Password and two-factor recovery by e-mail are off for {hours} hours.\n"
    who = "from a login of the account itself" if by_owner else "by an administrator"
    return (
        f"Dear {user.firstname or user.username},\n\n"
        f"The e-mail address of your vantage6 account '{user.username}' on {settings.SERVER_NAME} was "
        f"changed {who}; mail about the account no longer comes to this address.\n{what_now}"
        f"If you did not do this, contact {settings.SUPPORT_EMAIL} at once.\n"
    )


def _move_user(principal: Principal, user: User, organization_id: int, new_role_ids: list | None) -> None:
    """Moving a user to another organization is for global user editors, and leaves no foreign role."""
    principal.require(principal.has("user", "glo", "edit"))
    _organization_must_exist(organization_id)
    role_orgs = (
        Role.objects.filter(pk__in=new_role_ids) if new_role_ids is not None else user.roles.all()
    ).values_list("organization_id", flat=True)
    if any(org not in (None, organization_id) for org in role_orgs):
        raise bad_request("The user holds roles of its current organization; remove them first")
    user.organization_id = organization_id


OWN_PASSWORD_WITH_THE_CURRENT_ONE = (
    "Change your own password with your current password (the password change page of the admin site, "
    "or PATCH /api/password/change)"
)


@transaction.atomic
def user_password_set(*, principal: Principal, user: User, password: str) -> None:
    """Give another user a new password, as an editor of that user who holds every rule the user
    holds; the password policy is the caller's to check. One's own password is changed with the
    current one (``PATCH /api/password/change``, the admin site's password change): a session or token
    alone, perhaps stolen, must not set it."""
    principal.require_allows("user", user, "edit")
    if user.pk == principal.id:
        raise bad_request(OWN_PASSWORD_WITH_THE_CURRENT_ONE)
    principal.require_holds_target(user)
    user.set_password(password)
    user.save(update_fields=["password"])
    end_all_logins(user.pk)
    audit(principal, "user.password_set", user)


@dataclass(frozen=True)
class UserDependents:
    """Rows of an app above accounts that a user created and that go with the user (registered by
    that app in its ``AppConfig.ready()``, as accounts imports no app above it)."""

    name: str  # what they are, in the error message: "tasks"
    exist: Callable[[User], bool]
    delete: Callable[[Principal, User], None]


_user_dependents: dict[str, UserDependents] = {}


def register_user_dependents(dependents: UserDependents) -> None:
    _user_dependents[dependents.name] = dependents


@transaction.atomic
def user_delete(*, principal: Principal, user: User, delete_dependents: bool) -> None:
    principal.require_allows("user", user, "delete")
    principal.require_holds_target(user)
    for dependents in _user_dependents.values():
        if not dependents.exist(user):
            continue
        if not delete_dependents:
            raise bad_request(
                f"User id={user.pk} has created {dependents.name}. Delete them first, or set the "
                "'delete_dependents' parameter to delete them along with the user."
            )
        dependents.delete(principal, user)
    audit(principal, "user.delete", user, username=user.username)
    user.delete()


# --- roles ------------------------------------------------------------------------------------------
@transaction.atomic
def role_create(
    *,
    principal: Principal,
    name: str,
    rule_ids: Iterable[int],
    description: str = "",
    organization_id: int | None = None,
) -> Role:
    organization_id = organization_id or principal.organization_id
    principal.require_reaches("role", "create", organization_id=organization_id)
    _organization_must_exist(organization_id)
    rules = _rules(rule_ids, strict=True)
    principal.require_holds(_triples(rules), organization_id)
    role = Role.objects.create(name=name, description=description or "", organization_id=organization_id)
    role.rules.set(rules)
    audit(principal, "role.create", role, name=name)
    return role


@transaction.atomic
def role_update(*, principal: Principal, role: Role, data: dict) -> Role:
    """Apply a partial update; a new rule list must be held in full, and so must the rules it drops."""
    _require_not_default(role)
    principal.require_allows("role", role, "edit")
    if data.get("name") is not None:
        role.name = data["name"]
    if data.get("description") is not None:
        role.description = data["description"]
    role.save()
    if data.get("rules") is not None:
        new, old = set(_rules(data["rules"], strict=True)), set(role.rules.all())
        principal.require_holds(_triples(new | old), role.organization_id)
        if new != old:
            principal.require_edits_holders(role)
        role.rules.set(new)
        rights_changed.send(sender=Role, roles=[role.pk])
    audit(principal, "role.update", role, fields=sorted(k for k, v in data.items() if v is not None))
    return role


@transaction.atomic
def role_delete(*, principal: Principal, role: Role, delete_dependents: bool) -> None:
    _require_not_default(role)
    principal.require_allows("role", role, "delete")
    principal.require_holds(_triples(role.rules.all()))  # its users lose them
    if not delete_dependents and role.users.exists():
        raise bad_request(
            f"Role id={role.pk} is assigned to users. Set the 'delete_dependents' parameter to remove it "
            "from them as well."
        )
    principal.require_edits_holders(role)
    audit(principal, "role.delete", role, name=role.name)
    # By its holders: they are looked up after the commit, when the role is gone.
    rights_changed.send(sender=Role, identities=list(role.users.values_list("pk", flat=True)))
    role.delete()


@transaction.atomic
def role_rule_change(*, principal: Principal, role: Role, rule: Rule, add: bool) -> None:
    """Add a rule to, or remove one from, a role of an organization (the caller must hold it)."""
    _require_not_default(role)
    principal.require_allows("role", role, "edit")
    principal.require_holds(_triples([rule]), role.organization_id)
    principal.require_edits_holders(role)
    if add:
        role.rules.add(rule)
    else:
        if not role.rules.filter(pk=rule.pk).exists():
            raise not_found(f"Rule id={rule.pk} is not part of role id={role.pk}!")
        role.rules.remove(rule)
    rights_changed.send(sender=Role, roles=[role.pk])
    audit(principal, "role.rule_add" if add else "role.rule_remove", role, rule_id=rule.pk)
