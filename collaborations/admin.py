"""Collaborations (with their organizations and nodes), studies and algorithm stores in the admin.

Every page obeys the rules the API applies: rows are narrowed by the rule engine and each action is
judged as the matching endpoint judges it. Organizations are registered with the accounts.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from accounts.backends import principal_of
from accounts.permissions import GLO, Principal
from accounts.services import audit
from collaborations.models import AlgorithmStore, Collaboration, Organization, Study
from nodes.models import Node


class ScopedAdmin(admin.ModelAdmin):
    """Rows the rule engine shows the logged-in user; ``allowed`` judges each action like the API."""

    resource: str  # the resource name of the rule engine's row filters

    @staticmethod
    def principal(request: HttpRequest) -> Principal:
        return principal_of(request.user)

    def allowed(self, principal: Principal, operation: str, obj: Model | None) -> bool:
        raise NotImplementedError

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return self.principal(request).visible_or_none(self.resource, super().get_queryset(request))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.allowed(self.principal(request), "view", obj)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.allowed(self.principal(request), "edit", obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.allowed(self.principal(request), "delete", obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.allowed(self.principal(request), "create", None)

    def _audited(self, request: HttpRequest, obj: Model, action: str) -> None:
        audit(self.principal(request), f"{self.resource}.{action}", obj)

    def save_model(self, request: HttpRequest, obj: Model, form: forms.ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        self._audited(request, obj, "edit" if change else "create")

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        self._audited(request, obj, "delete")
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for obj in queryset:
            self.delete_model(request, obj)


def visible_rows(principal: Principal, resource: str, obj: Model, operation: str = "view") -> bool:
    return principal.visible_or_none(resource, type(obj).objects.filter(pk=obj.pk), operation).exists()


# --- collaborations -------------------------------------------------------------------------------------
class MemberInline(admin.TabularInline):
    """Adding or removing a member is what POST/DELETE /collaboration/<id>/organization allow."""

    model = Collaboration.organizations.through
    verbose_name = "member organization"
    verbose_name_plural = "member organizations"
    extra = 0

    def _may_change(self, request: HttpRequest, obj: Collaboration | None) -> bool:
        return obj is not None and principal_of(request.user).can_col("collaboration", "edit", obj.pk)

    def has_view_permission(self, request: HttpRequest, obj: Collaboration | None = None) -> bool:
        return True

    def has_add_permission(self, request: HttpRequest, obj: Collaboration | None = None) -> bool:
        return self._may_change(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Collaboration | None = None) -> bool:
        return self._may_change(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Collaboration | None = None) -> bool:
        return self._may_change(request, obj)


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    show_change_link = True

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return True

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class NodeInline(_ReadOnlyInline):
    """The collaboration's nodes; a node is created on its own page, which shows its API key once."""

    model = Node
    fields = ["name", "organization", "status", "last_seen"]
    readonly_fields = fields


class AlgorithmStoreInline(_ReadOnlyInline):
    model = AlgorithmStore
    fields = ["name", "url"]
    readonly_fields = fields


@admin.register(Collaboration)
class CollaborationAdmin(ScopedAdmin):
    resource = "collaboration"
    list_display = ["name", "encrypted"]
    list_filter = ["encrypted"]
    search_fields = ["name"]
    fields = ["name", "encrypted"]
    inlines = [MemberInline, NodeInline, AlgorithmStoreInline]

    def allowed(self, principal: Principal, operation: str, obj: Collaboration | None) -> bool:
        if operation == "create":
            return principal.has("collaboration", GLO, "create")
        if obj is None:
            return principal.max_scope("collaboration", operation) is not None
        if operation == "view":
            return visible_rows(principal, "collaboration", obj)
        return principal.can_col("collaboration", operation, obj.pk)


# --- studies -------------------------------------------------------------------------------------------
class StudyForm(forms.ModelForm):
    principal: Principal

    class Meta:
        model = Study
        fields = ["name", "collaboration", "organizations"]

    def clean(self) -> dict:
        cleaned = super().clean()
        collaboration, organizations = cleaned.get("collaboration"), cleaned.get("organizations")
        if collaboration is None:
            return cleaned
        if self.instance.pk is None and not self.principal.can_col("study", "create", collaboration.pk):
            raise forms.ValidationError(f"You may not create studies in collaboration '{collaboration}'.")
        if self.instance.pk is not None and collaboration.pk != self.instance.collaboration_id:
            raise forms.ValidationError("A study cannot move to another collaboration.")
        members = set(collaboration.organizations.values_list("pk", flat=True))
        if outsiders := [org.name for org in organizations or () if org.pk not in members]:
            raise forms.ValidationError(
                f"Not members of collaboration '{collaboration}': {', '.join(outsiders)}"
            )
        return cleaned


@admin.register(Study)
class StudyAdmin(ScopedAdmin):
    resource = "study"
    form = StudyForm
    list_display = ["name", "collaboration"]
    list_select_related = ["collaboration"]
    list_filter = ["collaboration"]
    search_fields = ["name"]
    filter_horizontal = ["organizations"]

    def allowed(self, principal: Principal, operation: str, obj: Study | None) -> bool:
        if obj is None:
            return principal.max_scope("study", operation) is not None
        return visible_rows(principal, "study", obj, operation)

    def get_form(self, request: HttpRequest, obj: Study | None = None, **kwargs) -> type[forms.ModelForm]:
        form = super().get_form(request, obj, **kwargs)
        form.principal = self.principal(request)
        return form

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):
        if db_field.name == "collaboration":
            kwargs["queryset"] = self.principal(request).visible_or_none(
                "collaboration", Collaboration.objects.all()
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request: HttpRequest, **kwargs):
        if db_field.name == "organizations":
            kwargs["queryset"] = self.principal(request).visible_or_none(
                "organization", Organization.objects.all()
            )
        return super().formfield_for_manytomany(db_field, request, **kwargs)


# --- algorithm stores ------------------------------------------------------------------------------------
@admin.register(AlgorithmStore)
class AlgorithmStoreAdmin(ScopedAdmin):
    """Links of stores to collaborations (empty: all collaborations).

    A link is made through the API, which registers this server at the store first. Deleting a link
    here leaves this server on the store's list.
    """

    resource = "algorithmstore"
    list_display = ["name", "url", "collaboration"]
    list_select_related = ["collaboration"]
    search_fields = ["name", "url"]
    fields = ["name", "url", "collaboration"]
    readonly_fields = ["url", "collaboration"]

    def allowed(self, principal: Principal, operation: str, obj: AlgorithmStore | None) -> bool:
        if operation == "create":
            return False
        if operation == "view":
            return (
                visible_rows(principal, "algorithmstore", obj)
                if obj
                else principal.max_scope("collaboration", "view") is not None
            )
        if obj is None:
            return principal.max_scope("collaboration", "edit") is not None
        if obj.collaboration_id is None:
            return principal.has("collaboration", GLO, "edit")
        return principal.can_col("collaboration", "edit", obj.collaboration_id)
