"""Nodes in the admin: their status, and an API key shown once when a node is created."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import AuthStatus
from accounts.permissions import Principal
from collaborations.admin import ScopedAdmin
from collaborations.models import Collaboration, Organization
from nodes.models import Node, NodeConfig
from nodes.services import new_api_key, node_api_key_reset, require_no_node_yet
from vantage6.api.errors import ApiError


class NodeConfigInline(admin.TabularInline):
    """What the node shares over its socket; the node replaces it, so it is read-only here."""

    model = NodeConfig
    fields = ["key", "value"]
    readonly_fields = fields
    extra = 0

    def has_view_permission(self, request: HttpRequest, obj: Node | None = None) -> bool:
        return True

    def has_add_permission(self, request: HttpRequest, obj: Node | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Node | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Node | None = None) -> bool:
        return False


class NodeForm(forms.ModelForm):
    """A new node is checked as POST /api/node checks it."""

    principal: Principal

    class Meta:
        model = Node
        fields = ["name", "organization", "collaboration", "ip"]

    def clean(self) -> dict:
        cleaned = super().clean()
        organization, collaboration = cleaned.get("organization"), cleaned.get("collaboration")
        if self.instance.pk is not None or organization is None:
            return cleaned
        if collaboration is None:
            raise forms.ValidationError("A new node needs a collaboration.")
        if not self.principal.allow_org_in_col("node", "create", organization.pk, collaboration.pk):
            raise forms.ValidationError(
                "You may not create a node for this organization in this collaboration."
            )
        if not collaboration.organizations.filter(pk=organization.pk).exists():
            raise forms.ValidationError(f"'{organization}' is not a member of '{collaboration}'.")
        try:
            require_no_node_yet(organization_id=organization.pk, collaboration_id=collaboration.pk)
        except ApiError as exc:
            raise forms.ValidationError(str(exc.msg)) from None
        return cleaned


def _show_api_key(modeladmin: admin.ModelAdmin, request: HttpRequest, node: Node, api_key: str) -> None:
    modeladmin.message_user(
        request,
        f"API key of node '{node.name}': {api_key} (shown only now; put it in the node's configuration).",
        messages.WARNING,
    )


@admin.register(Node)
class NodeAdmin(ScopedAdmin):
    resource = "node"
    form = NodeForm
    list_display = ["name", "organization", "collaboration", "status", "last_seen", "ip"]
    list_filter = ["status", "collaboration"]
    list_select_related = ["organization", "collaboration"]
    search_fields = ["name", "organization__name", "collaboration__name"]
    inlines = [NodeConfigInline]
    actions = ["reset_api_keys"]

    def allowed(self, principal: Principal, operation: str, obj: Node | None) -> bool:
        if obj is None:
            return principal.max_scope("node", operation) is not None
        return principal.allow_org_in_col("node", operation, obj.organization_id, obj.collaboration_id)

    def get_fields(self, request: HttpRequest, obj: Node | None = None) -> list[str]:
        return ["name", "organization", "collaboration", "ip", *(["status", "last_seen"] if obj else [])]

    def get_readonly_fields(self, request: HttpRequest, obj: Node | None = None) -> list[str]:
        # A node never moves: it would take its key into another organization's or collaboration's work.
        return ["organization", "collaboration", "status", "last_seen"] if obj else []

    def get_form(self, request: HttpRequest, obj: Node | None = None, **kwargs) -> type[forms.ModelForm]:
        form = super().get_form(request, obj, **kwargs)
        form.principal = self.principal(request)
        return form

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):
        principal = self.principal(request)
        if db_field.name == "organization":
            kwargs["queryset"] = principal.visible_or_none("organization", Organization.objects.all())
        if db_field.name == "collaboration":
            kwargs["queryset"] = principal.visible_or_none("collaboration", Collaboration.objects.all())
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Node, form: forms.ModelForm, change: bool) -> None:
        api_key = None
        if not change:
            api_key = new_api_key()
            obj.set_api_key(api_key)
            obj.status = AuthStatus.OFFLINE
        super().save_model(request, obj, form, change)
        if api_key:
            _show_api_key(self, request, obj, api_key)

    @admin.action(description="Give the selected nodes a new API key (the old keys stop working)")
    def reset_api_keys(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        principal = self.principal(request)
        for node in queryset:
            if not self.allowed(principal, "edit", node):
                self.message_user(request, f"You may not change node '{node.name}'.", messages.ERROR)
                continue
            _show_api_key(self, request, node, node_api_key_reset(principal=principal, node=node))
