"""The admin site: users, roles, the rule catalogue and the audit trail, under the API's rules.

Every list is narrowed by the rule engine and every change goes through the same services as the
API, so the escalation guards (hold what you grant, no own roles, roles of the user's organization)
hold here too.
"""

from __future__ import annotations

from typing import cast

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import authenticate
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.models import Group
from django.contrib.auth.views import PasswordChangeView
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponseBase
from django.urls import reverse
from rest_framework.exceptions import ValidationError as ApiValidationError

from accounts import login, services
from accounts.backends import object_allowed, principal_of
from accounts.models import AuditEntry, Role, Rule, User
from accounts.permissions import Principal
from accounts.serializers import validate_password_policy, validate_role_name
from vantage6.admin import AdminPage, ScopedAdmin, ServiceForm
from vantage6.api.errors import ApiError


# --- login ------------------------------------------------------------------------------------------
class AdminLoginForm(AdminAuthenticationForm):
    """Password login with the lock-out policy, and the two-factor code when that is switched on."""

    mfa_code = forms.CharField(label="Two-factor code", max_length=10, required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not settings.TWO_FACTOR_AUTH:
            del self.fields["mfa_code"]

    def clean(self) -> dict:
        username, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if username is not None and password:
            self.user_cache = authenticate(
                self.request, username=username, password=password, mfa_code=self.cleaned_data.get("mfa_code")
            )
            if self.user_cache is None:
                raise self.get_invalid_login_error()
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data


class AdminPasswordChangeForm(PasswordChangeForm):
    """The site's own password change, as ``PATCH /api/password/change`` does it: the password policy,
    the current password checked under the lock-out, every login of the user ended, an audit record."""

    def clean_old_password(self) -> str:
        return self.cleaned_data["old_password"]  # checked by the service, which counts a wrong one

    def clean(self) -> dict:
        cleaned = cast(dict, super().clean())
        if self.errors:
            return cleaned
        try:
            new_password = _policy_checked(cleaned["new_password2"], validate_password_policy)
            login.password_change(
                principal=principal_of(self.user),
                current_password=cleaned["old_password"],
                new_password=new_password,
            )
        except forms.ValidationError as exc:
            self.add_error("new_password2", exc)
        except ApiError as exc:  # the page shows the errors of its fields only
            self.add_error("old_password" if exc.status_code == 401 else "new_password2", str(exc.msg))
        return cleaned

    def save(self, commit: bool = True) -> User:
        # Saved by the service: the session goes on with the new password and token generation.
        self.user.refresh_from_db(fields=["password", "token_generation"])
        return self.user


def _password_change(request: HttpRequest, extra_context: dict | None = None) -> HttpResponseBase:
    """Django's page for changing one's own password, with ``AdminPasswordChangeForm``."""
    view = PasswordChangeView.as_view(
        form_class=AdminPasswordChangeForm,
        success_url=reverse("admin:password_change_done", current_app=admin.site.name),
        extra_context={**admin.site.each_context(request), **(extra_context or {})},
    )
    request.current_app = admin.site.name
    return view(request)


admin.site.login_form = AdminLoginForm
admin.site.login_template = "accounts/admin_login.html"
admin.site.password_change = _password_change  # type: ignore[method-assign,assignment]  # before the URLs exist
admin.site.site_header = "vantage6 server administration"
admin.site.unregister(Group)  # permissions come from rules, never from Django groups


# --- rule-scoped admin --------------------------------------------------------------------------------
class RuleScopedAdmin(ScopedAdmin):
    """Users, roles and organizations (registered by collaborations): each action judged as Django's
    permission checks judge it."""

    def allowed(self, principal: Principal, operation: str, obj: Model | None) -> bool:
        if obj is None:
            return principal.at_least("org", self.resource, operation)
        return object_allowed(principal, self.resource, operation, obj)


def _policy_checked(value: str, validator) -> str:
    try:
        return validator(value)
    except ApiValidationError as exc:
        raise forms.ValidationError([str(message) for message in exc.detail]) from None


def _offer_visible(form: ServiceForm, name: str, resource: str) -> None:
    """Offer in the relation field ``name`` only the rows of ``resource`` the caller sees, by name."""
    field = form.choices(name)
    field.queryset = form.principal.visible_or_none(resource, cast(QuerySet, field.queryset).order_by("name"))


# --- users ------------------------------------------------------------------------------------------------
class UserAdminForm(ServiceForm):
    new_password = forms.CharField(
        label="New password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="At least 8 characters with a digit, an upper- and a lower-case letter and a symbol. "
        "Leave empty to keep the current password.",
    )

    class Meta:
        model = User
        fields = ["username", "email", "firstname", "lastname", "organization", "roles", "rules"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "organization" not in self.fields:  # a read-only page has no model fields
            return
        _offer_visible(self, "organization", "organization")
        _offer_visible(self, "roles", "role")
        self.choices("rules").queryset = Rule.objects.order_by("id")
        if self.instance.pk is None:
            self.fields["new_password"].required = True

    def clean_new_password(self) -> str:
        value = self.cleaned_data.get("new_password") or ""
        return _policy_checked(value, validate_password_policy) if value else value

    def apply(self) -> User:
        data = self.cleaned_data
        if self.instance.pk is None:
            return services.user_create(
                principal=self.principal,
                username=data["username"],
                email=data["email"],
                password=data["new_password"],
                firstname=data.get("firstname") or "",
                lastname=data.get("lastname") or "",
                organization_id=data["organization"].pk,
                role_ids=self._ids("roles"),
                rule_ids=self._ids("rules"),
            )
        changes = self._changed("username", "email", "firstname", "lastname")
        if "organization" in self.changed_data:
            changes["organization_id"] = data["organization"].pk
        for name in ("roles", "rules"):
            if name in self.changed_data:
                changes[name] = self._ids(name)
        user = services.user_update(
            principal=self.principal, user=User.objects.get(pk=self.instance.pk), data=changes
        )
        if data.get("new_password"):
            services.user_password_set(principal=self.principal, user=user, password=data["new_password"])
        return user


@admin.register(User)
class UserAdmin(RuleScopedAdmin):
    resource = "user"
    form = UserAdminForm
    list_display = ["id", "username", "email", "firstname", "lastname", "organization", "last_seen"]
    list_select_related = ["organization"]
    list_filter = ["organization"]
    search_fields = ["username", "email", "firstname", "lastname"]
    filter_horizontal = ["roles", "rules"]
    fieldsets = [
        (None, {"fields": ["username", "new_password", "email", "firstname", "lastname", "organization"]}),
        ("Permissions", {"fields": ["roles", "rules"]}),
    ]

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        # The confirmation page lists the tasks the user created; confirming deletes them too.
        services.user_delete(principal=principal_of(request.user), user=obj, delete_dependents=True)


# --- roles ------------------------------------------------------------------------------------------------
class RoleAdminForm(ServiceForm):
    class Meta:
        model = Role
        fields = ["name", "description", "organization", "rules"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "organization" in self.fields:
            self.fields["organization"].required = True
            _offer_visible(self, "organization", "organization")
        if "rules" in self.fields:  # a read-only page has no form fields
            self.choices("rules").queryset = Rule.objects.order_by("id")

    def clean_name(self) -> str:
        return _policy_checked(self.cleaned_data["name"], validate_role_name)

    def apply(self) -> Role:
        data = self.cleaned_data
        if self.instance.pk is None:
            return services.role_create(
                principal=self.principal,
                name=data["name"],
                description=data.get("description") or "",
                rule_ids=self._ids("rules"),
                organization_id=data["organization"].pk,
            )
        changes = self._changed("name", "description")
        if "rules" in self.changed_data:
            changes["rules"] = self._ids("rules")
        return services.role_update(
            principal=self.principal, role=Role.objects.get(pk=self.instance.pk), data=changes
        )


@admin.register(Role)
class RoleAdmin(RuleScopedAdmin):
    resource = "role"
    form = RoleAdminForm
    list_display = ["id", "name", "organization", "is_default_role"]
    list_select_related = ["organization"]
    list_filter = ["is_default_role", "organization"]
    search_fields = ["name", "description"]
    filter_horizontal = ["rules"]

    def get_readonly_fields(self, request: HttpRequest, obj: Role | None = None) -> list[str]:
        return ["organization", "is_default_role"] if obj is not None else []

    def delete_model(self, request: HttpRequest, obj: Role) -> None:
        services.role_delete(principal=principal_of(request.user), role=obj, delete_dependents=True)


# --- rules ------------------------------------------------------------------------------------------------
@admin.register(Rule)
class RuleAdmin(AdminPage):
    """The fixed catalogue: readable by every admin user, never editable."""

    list_display = ["id", "name", "scope", "operation", "description"]
    list_filter = ["name", "scope", "operation"]
    readonly_fields = ["name", "scope", "operation", "description"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Rule | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Rule | None = None) -> bool:
        return False


# --- the audit trail --------------------------------------------------------------------------------------
@admin.register(AuditEntry)
class AuditEntryAdmin(ScopedAdmin):
    """Read-only: the entries the ``audit`` rules show, as ``GET /api/audit`` does."""

    resource = "audit"
    list_display = [
        "id", "created_at", "actor_type", "actor_id", "action", "object_type", "object_id",
        "actor_organization_id", "object_organization_id",
    ]  # fmt: skip
    list_filter = ["action", "actor_type", "object_type"]
    date_hierarchy = "created_at"
    search_fields = ["=actor_id", "=object_id", "=actor_organization_id", "=object_organization_id"]
    readonly_fields = [*list_display, "data"]  # type: ignore[list-item]  # field names
    actions = None

    def allowed(self, principal: Principal, operation: str, obj: Model | None) -> bool:
        return operation == "view" and super().allowed(principal, operation, obj)
