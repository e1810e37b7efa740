"""Nodes in the admin: their status, an API key shown once when a node is created, and the nodes on
a collaboration's page."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import ForeignKey, QuerySet
from django.forms import ModelChoiceField
from django.http import HttpRequest

from collaborations import admin as collaborations_admin
from collaborations.admin import ReadOnlyInline
from collaborations.models import Collaboration, Organization
from nodes import services
from nodes.models import Node, NodeConfig
from vantage6.admin import ScopedAdmin, ServiceForm


class NodeConfigInline(admin.TabularInline):
    """What the node shares over its socket; the node replaces it, so it is read-only here."""

    model = NodeConfig
    fields = ["key", "value"]
    readonly_fields = fields  # type: ignore[assignment]  # django-stubs types fields and readonly_fields apart
    extra = 0

    def has_view_permission(self, request: HttpRequest, obj: Node | None = None) -> bool:
        return True

    def has_add_permission(self, request: HttpRequest, obj: Node | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Node | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Node | None = None) -> bool:
        return False


class NodeForm(ServiceForm):
    """A new node is made as POST /api/node makes it; an existing one changes as PATCH /api/node/<id>."""

    api_key: str | None = None  # of a node just created, shown once
    ip = forms.GenericIPAddressField(label="IP", required=False)

    class Meta:
        model = Node
        fields = ["name", "organization", "collaboration", "ip"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is None:
            self.fields["name"].required = False
            self.fields["name"].help_text = "Empty: '<organization> - <collaboration> Node'."

    def apply(self) -> Node:
        data = self.cleaned_data
        if self.instance.pk is None:
            node, self.api_key = services.node_create(
                principal=self.principal,
                collaboration_id=data["collaboration"].pk,
                organization_id=data["organization"].pk,
                name=data["name"] or None,
            )
            return node
        changes = self._changed("name")
        if "ip" in self.changed_data:
            changes.update({"ip": data["ip"]} if data["ip"] else {"clear_ip": True})
        node = Node.objects.get(pk=self.instance.pk)
        return services.node_update(principal=self.principal, node=node, data=changes)


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

    def get_fields(self, request: HttpRequest, obj: Node | None = None) -> list[str]:  # type: ignore[override]
        if obj is None:
            return ["name", "organization", "collaboration"]
        return ["name", "organization", "collaboration", "ip", "status", "last_seen"]

    def get_readonly_fields(self, request: HttpRequest, obj: Node | None = None) -> list[str]:
        # A node never moves: it would take its key into another organization's or collaboration's work.
        return ["organization", "collaboration", "status", "last_seen"] if obj else []

    def formfield_for_foreignkey(
        self, db_field: ForeignKey, request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField | None:
        principal = self.principal(request)
        if db_field.name == "organization":
            kwargs["queryset"] = principal.visible_or_none("organization", Organization.objects.all())
        if db_field.name == "collaboration":
            kwargs["queryset"] = principal.visible_or_none("collaboration", Collaboration.objects.all())
            kwargs["required"] = True
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Node, form: NodeForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if form.api_key:
            _show_api_key(self, request, obj, form.api_key)

    def delete_model(self, request: HttpRequest, obj: Node) -> None:
        services.node_delete(principal=self.principal(request), node=obj)

    @admin.action(description="Give the selected nodes a new API key (the old keys stop working)")
    def reset_api_keys(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        principal = self.principal(request)
        for node in queryset:
            if not self.allowed(principal, "edit", node):
                self.message_user(request, f"You may not change node '{node.name}'.", messages.ERROR)
                continue
            api_key = services.node_api_key_reset(principal=principal, node=node)
            _show_api_key(self, request, node, api_key)


# --- a collaboration's nodes ---------------------------------------------------------------------------
class NodeInline(ReadOnlyInline):
    """The collaboration's nodes; a node is created on its own page, which shows its API key once."""

    model = Node
    resource = "node"
    fields = ["name", "organization", "status", "last_seen"]
    readonly_fields = fields  # type: ignore[assignment]  # django-stubs types fields and readonly_fields apart


# The collaboration page of collaborations, with its nodes first.
admin.site.unregister(Collaboration)


@admin.register(Collaboration)
class CollaborationAdmin(collaborations_admin.CollaborationAdmin):
    inlines = [NodeInline, *collaborations_admin.CollaborationAdmin.inlines]
