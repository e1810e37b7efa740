"""Output and input serializers of users, roles, rules and the login and recovery bodies."""

from __future__ import annotations

import re

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.catalogue import DEFAULT_ROLE_NAMES
from accounts.models import BCRYPT_MAX_BYTES, AuditEntry, Role, Rule, User
from accounts.selectors import user_permissions
from vantage6.api.fields import IdField, ListLinkField, RefField, TextOrNumberField, TimestampField, id_list
from vantage6.api.serializers import OutputSerializer, StrictSerializer
from vantage6.api.validators import AnyKeyRequired, Excluded, StatedRule, not_a_number


def _optional_text(max_length: int) -> serializers.CharField:
    return serializers.CharField(max_length=max_length, required=False, allow_blank=True, allow_null=True)


# --- passwords -------------------------------------------------------------------------------------
# Characters the policy asks for, as Python and ECMA-262 read them alike (the document states them).
_PASSWORD_RULES = (
    ("[0-9]", "Password must contain at least one digit"),
    ("[A-Z]", "Password must contain at least one uppercase letter"),
    ("[a-z]", "Password must contain at least one lowercase letter"),
    ("[^a-zA-Z0-9]", "Password must contain at least one special character"),
)
_PASSWORD_LENGTHS = (8, 128)
# bcrypt's bound in bytes as a JSON schema can state it (it counts characters): every character counts as
# many bytes as the widest of the password's characters takes in UTF-8. Its UTF-8 bytes are never more.
_WIDTH_RANGES = (
    (1, "\\u0000-\\u007f", "ASCII"),
    (2, "\\u0000-\\u07ff", "up to U+07FF"),
    (3, "\\u0000-\\ud7ff\\ue000-\\uffff", "up to U+FFFF"),
    (4, "", "of any"),
)
_BYTE_BOUND = (
    f"at most {BCRYPT_MAX_BYTES} bytes in UTF-8, every character counted as the widest of them: at most "
    + ", ".join(f"{BCRYPT_MAX_BYTES // width} characters {name}" for width, _range, name in _WIDTH_RANGES)
)


def _widest_character_bytes(value: str) -> int:
    return max((len(character.encode()) for character in value), default=1)


class PasswordPolicy(StatedRule):
    """8 to 128 characters, at most ``BCRYPT_MAX_BYTES`` bytes with every character counted as the widest
    of them (so at most that many characters), with a digit, an upper- and a lower-case letter and a special
    character."""

    schema = {
        "minLength": _PASSWORD_LENGTHS[0],
        "maxLength": min(_PASSWORD_LENGTHS[1], BCRYPT_MAX_BYTES),
        "allOf": [{"pattern": pattern} for pattern, _message in _PASSWORD_RULES],
        "anyOf": [
            {"maxLength": BCRYPT_MAX_BYTES // width, **({"pattern": f"^[{chars}]*$"} if chars else {})}
            for width, chars, _name in _WIDTH_RANGES
        ],
        "description": (
            f"A password of {_PASSWORD_LENGTHS[0]} to {BCRYPT_MAX_BYTES} characters, {_BYTE_BOUND}; with a "
            "digit, an upper- and a lower-case letter and a special character."
        ),
    }

    def __call__(self, value: str) -> str:
        low, high = _PASSWORD_LENGTHS
        errors = (
            []
            if low <= len(value) <= high
            else [f"Password must be between {low} and {high} characters long"]
        )
        widest = _widest_character_bytes(value)
        if len(value) * widest > BCRYPT_MAX_BYTES:
            errors.append(f"Password must be {_BYTE_BOUND}")
        errors += [message for pattern, message in _PASSWORD_RULES if not re.search(pattern, value)]
        if errors:
            raise serializers.ValidationError(errors)
        return value


validate_password_policy = PasswordPolicy()


def password_field(*, policy: bool) -> serializers.CharField:
    validators = [validate_password_policy] if policy else []
    return serializers.CharField(
        min_length=None if policy else 1, max_length=None if policy else 128, trim_whitespace=False,
        validators=validators,  # type: ignore[arg-type]  # a validator's return value is ignored
    )  # fmt: skip


# --- output ----------------------------------------------------------------------------------------
class UserOutput(OutputSerializer):
    type = serializers.SerializerMethodField()
    last_seen = TimestampField()
    otp_secret = serializers.SerializerMethodField()
    last_email_failed_login_sent = TimestampField()
    last_email_recover_password_sent = TimestampField()
    organization = RefField("organization")
    roles = ListLinkField("role", "user_id")
    rules = ListLinkField("rule", "user_id")

    class Meta:
        model = User
        fields = [
            "id", "type", "ip", "last_seen", "status", "username", "firstname", "lastname", "email",
            "otp_secret", "last_email_failed_login_sent", "last_email_recover_password_sent",
            "organization", "roles", "rules",
        ]  # fmt: skip

    def get_type(self, _user: User) -> str:
        return "user"

    def get_otp_secret(self, _user: User) -> str | None:
        return None  # the two-factor secret never leaves the server


class RoleOutput(OutputSerializer):
    organization = RefField("organization")
    rules = ListLinkField("rule", "role_id")
    users = ListLinkField("user", "role_id")

    class Meta:
        model = Role
        fields = ["id", "name", "description", "is_default_role", "organization", "rules", "users"]


class RuleOutput(OutputSerializer):
    users = ListLinkField("user", "rule_id")

    class Meta:
        model = Rule
        fields = ["id", "name", "description", "scope", "operation", "users"]


class UserPermissionsOutput(UserOutput):
    """A user with ``include_permissions``: the ids of its roles and rules, and of the organizations
    in its organization's collaborations; ``viewer`` in the context: whom it is shown to."""

    permissions = serializers.SerializerMethodField()
    # The schema of GET /user/<id> is this one: ``permissions`` only when asked for.
    optional_fields = ("permissions",)

    class Meta(UserOutput.Meta):
        fields = [*UserOutput.Meta.fields, "permissions"]

    @extend_schema_field(
        {
            "type": "object",
            "properties": {
                key: {"type": "array", "items": {"type": "integer"}}
                for key in ("roles", "rules", "orgs_in_collabs")
            },
            "required": ["roles", "rules", "orgs_in_collabs"],
        }
    )
    def get_permissions(self, user: User) -> dict:
        return user_permissions(user, self.context["viewer"])


class AuditEntryOutput(OutputSerializer):
    class Meta:
        model = AuditEntry
        fields = [
            "id", "created_at", "actor_type", "actor_id", "actor_organization_id", "action",
            "object_type", "object_id", "object_organization_id", "data",
        ]  # fmt: skip


# --- tokens and recovery ---------------------------------------------------------------------------
class _TokensOutput(serializers.Serializer):
    """The token pair of a login, for a user or a node."""

    access_token = serializers.CharField()
    refresh_token = serializers.CharField()
    refresh_url = serializers.CharField()


class UserTokensOutput(_TokensOutput):
    user_url = serializers.CharField()


class NodeTokensOutput(_TokensOutput):
    node_url = serializers.CharField()


class TwoFactorSetupOutput(serializers.Serializer):
    """The secret of a new two-factor setup (instead of tokens)."""

    qr_uri = serializers.CharField()
    otp_secret = serializers.CharField()
    msg = serializers.CharField()


class TokenValidOutput(serializers.Serializer):
    msg = serializers.CharField()
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.CharField()
    organization_id = serializers.IntegerField()


class LoginInput(serializers.Serializer):
    username = serializers.CharField(max_length=128)
    password = password_field(policy=False)
    mfa_code = TextOrNumberField(max_length=10, required=False, allow_blank=True, allow_null=True)


class TokenRevokeInput(serializers.Serializer):
    # True: every login of the caller ends, not only this one.
    all = serializers.BooleanField(required=False, default=False)


class RecoverLostInput(StrictSerializer):
    """Unknown keys are refused, as vantage6 refuses them (marshmallow's default): an anonymous caller's
    body says what it asks and nothing else."""

    email = serializers.EmailField(max_length=256, required=False)
    username = serializers.CharField(max_length=128, required=False)

    class Meta:
        validators = [AnyKeyRequired(("email", "username"), "Provide a username or an email address")]


class ResetTokenInput(serializers.Serializer):
    reset_token = serializers.CharField(max_length=1024)


class PasswordResetInput(ResetTokenInput):
    password = password_field(policy=True)


class PasswordChangeInput(serializers.Serializer):
    current_password = password_field(policy=False)
    new_password = password_field(policy=True)


# --- users -----------------------------------------------------------------------------------------
_username_validator = RegexValidator(
    r"^[a-zA-Z][a-zA-Z0-9._-]+$",
    "Username must start with a letter and contain only letters, digits, '.', '_' and '-'",
)


def _username_field(**kwargs) -> serializers.CharField:
    return serializers.CharField(min_length=3, max_length=128, validators=[_username_validator], **kwargs)


class UserCreateInput(serializers.Serializer):
    username = _username_field()
    email = serializers.EmailField(max_length=256)
    password = password_field(policy=True)
    firstname = _optional_text(128)
    lastname = _optional_text(128)
    organization_id = IdField(required=False, allow_null=True)
    roles = id_list(required=False, allow_null=True)
    rules = id_list(required=False, allow_null=True)


class UserUpdateInput(serializers.Serializer):
    username = _username_field(required=False)
    email = serializers.EmailField(max_length=256, required=False)
    firstname = _optional_text(128)
    lastname = _optional_text(128)
    organization_id = IdField(required=False)
    roles = id_list(required=False)
    rules = id_list(required=False)


# --- roles -----------------------------------------------------------------------------------------
_ROLE_NAME_RULES: list[StatedRule] = [
    Excluded(DEFAULT_ROLE_NAMES, "Role name '{value}' is reserved for a default role"),
    not_a_number("Role name cannot be a number"),
]


def validate_role_name(value: str) -> str:
    for rule in _ROLE_NAME_RULES:
        rule(value)
    return value


class RoleCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=128, validators=_ROLE_NAME_RULES)
    description = _optional_text(1024)
    rules = id_list()
    organization_id = IdField(required=False, allow_null=True)


class RoleUpdateInput(serializers.Serializer):
    # The official client sends null for what it leaves unchanged.
    name = serializers.CharField(
        max_length=128,
        validators=_ROLE_NAME_RULES,
        required=False,
        allow_null=True,
    )
    description = _optional_text(1024)
    rules = id_list(required=False, allow_null=True)
