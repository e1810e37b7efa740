"""Identities (users and nodes share one id space), roles, rules and the audit trail."""

from __future__ import annotations

from typing import Any, cast

import bcrypt
from django.conf import settings
from django.contrib import auth
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models
from django.utils.crypto import salted_hmac

from accounts.catalogue import OPERATIONS, SCOPES
from vantage6 import throttle

# bcrypt reads no more of a password; vantage6's bcrypt ignored the rest, newer ones refuse it.
BCRYPT_MAX_BYTES = 72


def bcrypt_input(raw_password: str) -> bytes:
    """What bcrypt checks of a password: its first 72 bytes, as vantage6 checked them."""
    return raw_password.encode()[:BCRYPT_MAX_BYTES]


class AuthStatus(models.TextChoices):
    ONLINE = "online"
    OFFLINE = "offline"


class Authenticatable(models.Model):
    """The common parent of users and nodes: its id is the JWT ``sub`` of both."""

    type = models.CharField(max_length=50)
    ip = models.CharField(max_length=64, null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=AuthStatus.choices, null=True, blank=True)
    # Part of every token of this identity; raising it ends all its logins at once.
    token_generation = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "authenticatable"


class LoginSession(models.Model):
    """One login of a user or node: the refresh token that may be used next (rotation), and when
    the login ends. Its id is the ``sid`` claim of all tokens of the login."""

    id = models.CharField(primary_key=True, max_length=32)
    identity = models.ForeignKey(Authenticatable, on_delete=models.CASCADE, related_name="login_sessions")
    refresh_jti = models.CharField(max_length=64)
    # The refresh tokens replaced within REUSE_LEEWAY (``jti``: when, in seconds since the epoch), still
    # accepted for that moment: the parallel refreshes of one client's threads.
    replaced_jtis = models.JSONField(default=dict, blank=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)  # None: not capped (nodes)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "login_session"


class LoginCheck(models.Model):
    """A password guess at a user's account while it is being checked. It counts towards the lock-out
    until the check ends, and no longer than a check can take (``accounts.login``), so that a server
    process stopped mid-check does not leave its guesses counted."""

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="+")
    started_at = models.DateTimeField()

    class Meta:
        db_table = "login_check"


class ClientLimit(models.Model):
    """The failures of one client address (of one limiter) in the window open now, shared by every
    server process (written by ``vantage6.throttle``, in plain SQL)."""

    name = models.TextField(primary_key=True)  # the limiter's name and the client address
    closes_at = models.FloatField(db_index=True)  # seconds since the epoch
    hits = models.IntegerField()

    class Meta:
        db_table = throttle.TABLE


class Rule(models.Model):
    """One (resource, scope, operation) permission of the fixed catalogue."""

    name = models.CharField(max_length=64)
    scope = models.CharField(max_length=16, choices=[(v, v) for v in SCOPES.values()])
    operation = models.CharField(max_length=16, choices=[(v, v) for v in OPERATIONS.values()])
    description = models.CharField(max_length=256, blank=True, default="")

    class Meta:
        db_table = "rule"
        constraints = [
            models.UniqueConstraint(fields=["name", "scope", "operation"], name="rule_unique_triple")
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.scope.lower()} {self.operation.lower()}"


class Role(models.Model):
    name = models.CharField(max_length=128)
    description = models.CharField(max_length=1024, blank=True, default="")
    organization = models.ForeignKey(
        "collaborations.Organization", null=True, blank=True, on_delete=models.CASCADE, related_name="roles"
    )
    is_default_role = models.BooleanField(default=False)
    rules = models.ManyToManyField(Rule, related_name="roles", db_table="role_rule", blank=True)

    class Meta:
        db_table = "role"

    def __str__(self) -> str:
        return self.name


class UserManager(BaseUserManager):
    def create_user(self, username: str, password: str | None = None, **fields: object) -> User:
        user = cast(User, self.model(username=username, **fields))
        user.set_password(password)
        user.save()
        return user


class User(AbstractBaseUser, Authenticatable):
    authenticatable_ptr = models.OneToOneField(
        Authenticatable, parent_link=True, primary_key=True, on_delete=models.CASCADE, related_name="user"
    )
    username = models.CharField(max_length=128, unique=True)
    firstname = models.CharField(max_length=128, blank=True, default="")
    lastname = models.CharField(max_length=128, blank=True, default="")
    email = models.CharField(max_length=256, unique=True)
    organization = models.ForeignKey(
        "collaborations.Organization", on_delete=models.CASCADE, related_name="users"
    )
    failed_login_attempts = models.IntegerField(default=0)
    last_login_attempt = models.DateTimeField(null=True, blank=True)
    otp_secret = models.CharField(max_length=32, null=True, blank=True)
    # The last 30 s step whose two-factor code was accepted: each code logs in once.
    otp_last_step = models.BigIntegerField(null=True, blank=True)
    last_email_failed_login_sent = models.DateTimeField(null=True, blank=True)
    last_email_recover_password_sent = models.DateTimeField(null=True, blank=True)
    # Password recovery by e-mail is refused until then: the owner changed the address with a token
    # alone, which may be stolen (accounts.services._email_changed).
    recovery_held_until = models.DateTimeField(null=True, blank=True)
    roles = models.ManyToManyField(Role, related_name="users", db_table="permission", blank=True)
    rules = models.ManyToManyField(Rule, related_name="users", db_table="user_permission", blank=True)

    USERNAME_FIELD = "username"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["email"]
    objects = UserManager()  # type: ignore[misc]  # a user manager for the users of Authenticatable

    class Meta:
        db_table = "user"

    def __str__(self) -> str:
        return self.username

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.type = "user"
        super().save(*args, **kwargs)

    # --- the admin site: permissions come from rules (accounts.backends), never from Django tables ---
    is_superuser = False

    @property
    def is_staff(self) -> bool:
        from accounts.backends import is_staff

        return is_staff(self)

    @property
    def groups(self) -> models.QuerySet:
        """No Django groups: per-object grants (guardian) are given to users directly."""
        from django.contrib.auth.models import Group

        return Group.objects.none()

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return any(
            hasattr(backend, "has_perm") and backend.has_perm(self, perm, obj)
            for backend in auth.get_backends()
        )

    def has_perms(self, perm_list: list[str], obj: object | None = None) -> bool:
        return all(self.has_perm(perm, obj) for perm in perm_list)

    def has_module_perms(self, app_label: str) -> bool:
        return any(
            hasattr(backend, "has_module_perms") and backend.has_module_perms(self, app_label)
            for backend in auth.get_backends()
        )

    def _get_session_auth_hash(self, secret: str | None = None) -> str:
        """What an admin session is checked against: it ends with the password, as Django's does,
        and also when every login of the user ends (``token_generation``: logging out everywhere)."""
        credentials = f"{self.password}\n{self.token_generation}"
        return salted_hmac(
            "accounts.User.session_auth_hash", credentials, secret=secret, algorithm="sha256"
        ).hexdigest()

    # Passwords are plain bcrypt hashes (``$2b$``) as in vantage6, so existing hashes can be imported.
    def set_password(self, raw_password: str | None) -> None:
        if raw_password is None:
            self.set_unusable_password()
            return
        salt = bcrypt.gensalt(rounds=settings.BCRYPT_ROUNDS)
        self.password = bcrypt.hashpw(raw_password.encode(), salt).decode()
        self._password = raw_password

    def check_password(self, raw_password: str) -> bool:  # type: ignore[override]  # never None here
        if not self.password or not self.password.startswith("$2"):
            return False
        try:
            return bcrypt.checkpw(bcrypt_input(raw_password), self.password.encode())
        except ValueError:
            return False


class AuditAction(models.TextChoices):
    """The one vocabulary of audited actions: ``<object type>.<what happened>``."""

    # logins and tokens
    USER_LOGIN = "user.login"
    USER_LOGIN_FAILED = "user.login_failed"
    USER_LOCK_OUT = "user.lock_out"
    NODE_LOGIN = "node.login"
    NODE_LOGIN_FAILED = "node.login_failed"
    TOKEN_REVOKE = "token.revoke"
    TOKEN_REVOKE_ALL = "token.revoke_all"
    TOKEN_REUSE_REVOKED = "token.reuse_revoked"
    TOKEN_CONTAINER = "token.container"
    # users, roles
    USER_CREATE = "user.create"
    USER_UPDATE = "user.update"
    USER_DELETE = "user.delete"
    USER_PASSWORD_SET = "user.password_set"
    USER_PASSWORD_CHANGE = "user.password_change"
    USER_PASSWORD_RESET = "user.password_reset"
    USER_2FA_RESET = "user.2fa_reset"
    ROLE_CREATE = "role.create"
    ROLE_UPDATE = "role.update"
    ROLE_DELETE = "role.delete"
    ROLE_RULE_ADD = "role.rule_add"
    ROLE_RULE_REMOVE = "role.rule_remove"
    # organizations, collaborations, studies, algorithm stores
    ORGANIZATION_CREATE = "organization.create"
    ORGANIZATION_EDIT = "organization.edit"
    ORGANIZATION_DELETE = "organization.delete"
    COLLABORATION_CREATE = "collaboration.create"
    COLLABORATION_EDIT = "collaboration.edit"
    COLLABORATION_DELETE = "collaboration.delete"
    STUDY_CREATE = "study.create"
    STUDY_EDIT = "study.edit"
    STUDY_DELETE = "study.delete"
    ALGORITHMSTORE_CREATE = "algorithmstore.create"
    ALGORITHMSTORE_EDIT = "algorithmstore.edit"
    ALGORITHMSTORE_DELETE = "algorithmstore.delete"
    # nodes
    NODE_CREATE = "node.create"
    NODE_EDIT = "node.edit"
    NODE_DELETE = "node.delete"
    NODE_API_KEY_RESET = "node.api_key_reset"
    NODE_API_KEY_UPGRADE = "node.api_key_upgrade"
    NODE_KILL_TASKS = "node.kill_tasks"
    # tasks, runs and what they use
    TASK_CREATE = "task.create"
    TASK_KILL = "task.kill"
    TASK_DELETE = "task.delete"
    RUN_UPDATE = "run.update"
    RUN_CLEANUP = "run.cleanup"
    PORT_CREATE = "port.create"
    PORT_DELETE = "port.delete"
    BLOB_CREATE = "blob.create"
    # the server itself
    VANTAGE6_IMPORT = "vantage6.import"


class AuditTrailIsAppendOnly(Exception):
    """Raised on any attempt to change or delete an audit entry."""

    def __init__(self) -> None:
        super().__init__("Audit entries are append-only: they are never changed or deleted")


class AuditEntryQuerySet(models.QuerySet):
    """No bulk path changes or deletes entries either (the database refuses it too, where it can)."""

    def update(self, **kwargs: object) -> int:
        raise AuditTrailIsAppendOnly

    def delete(self) -> tuple[int, dict]:
        raise AuditTrailIsAppendOnly

    def bulk_update(self, *args: object, **kwargs: object) -> int:
        raise AuditTrailIsAppendOnly

    def update_or_create(self, *args: Any, **kwargs: Any) -> tuple[Any, bool]:
        raise AuditTrailIsAppendOnly


class AuditEntry(models.Model):
    """One state-changing action (or login attempt): who did what to which object. Append-only."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor_type = models.CharField(max_length=16)  # user, node, container, system or anonymous
    actor_id = models.IntegerField(null=True)
    action = models.CharField(max_length=64, choices=AuditAction.choices)
    object_type = models.CharField(max_length=32)
    object_id = models.IntegerField(null=True)
    # Organizations of the actor and of the object when the entry was written (plain ids: an entry
    # outlives what it names), which decide who may read the entry.
    actor_organization_id = models.IntegerField(null=True, db_index=True)
    object_organization_id = models.IntegerField(null=True, db_index=True)
    data = models.JSONField(default=dict, blank=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        db_table = "audit_entry"
        verbose_name_plural = "audit entries"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AuditTrailIsAppendOnly
        kwargs["force_insert"] = True  # never an UPDATE, not even of an entry with a chosen id
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict]:
        raise AuditTrailIsAppendOnly
