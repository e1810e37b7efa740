"""Organizations, collaborations (nodes adds their nodes), studies and algorithm stores in the admin.

Every page obeys the rules the API applies (see ``vantage6.admin``): rows are narrowed by the rule
engine, each action is judged as the matching endpoint judges it, and writes are the API's service
calls.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import ForeignKey, ManyToManyField, Model, QuerySet
from django.forms import ModelChoiceField, ModelMultipleChoiceField
from django.http import HttpRequest

from accounts.admin import RuleScopedAdmin
from accounts.permissions import Principal
from collaborations import services
from collaborations.models import AlgorithmStore, Collaboration, Organization, Study
from vantage6.admin import ScopedAdmin, ServiceForm


def visible_organizations(principal: Principal) -> QuerySet[Organization]:
    return principal.visible_or_none("organization", Organization.objects.order_by("name"))


# --- organizations --------------------------------------------------------------------------------------
class OrganizationForm(ServiceForm):
    class Meta:
        model = Organization
        fields = ["name", "domain", "address1", "address2", "zipcode", "country"]

    def apply(self) -> Organization:
        names = self.Meta.fields
        if self.instance.pk is None:
            data = {name: self.cleaned_data.get(name) for name in names}
            return services.organization_create(principal=self.principal, data=data)
        return services.organization_update(
            principal=self.principal,
            organization=Organization.objects.get(pk=self.instance.pk),
            data=self._changed(*names),
        )


@admin.register(Organization)
class OrganizationAdmin(RuleScopedAdmin):
    resource = "organization"
    form = OrganizationForm
    list_display = ["id", "name", "domain", "country"]
    search_fields = ["name", "domain"]
    fields = OrganizationForm.Meta.fields  # type: ignore[assignment]  # a list of field names

    def delete_model(self, request: HttpRequest, obj: Organization) -> None:
        services.organization_delete(
            principal=self.principal(request), organization=obj, delete_dependents=True
        )


# --- collaborations -------------------------------------------------------------------------------------
class ReadOnlyInline(admin.TabularInline):
    """Related rows on a page, read-only: those of them the rule engine shows the viewer, as their own
    page and endpoint do (one may view a collaboration and not its nodes)."""

    resource: str  # the resource name of the rule engine's row filters
    extra = 0
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return ScopedAdmin.principal(request).visible_or_none(self.resource, super().get_queryset(request))

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return True

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class AlgorithmStoreInline(ReadOnlyInline):
    model = AlgorithmStore
    resource = "algorithmstore"
    fields = ["name", "url"]
    readonly_fields = fields  # type: ignore[assignment]  # django-stubs types fields and readonly_fields apart


class CollaborationForm(ServiceForm):
    """Members change as POST and DELETE /collaboration/<id>/organization change them, one at a time."""

    class Meta:
        model = Collaboration
        fields = ["name", "encrypted", "organizations"]
        labels = {"organizations": "Member organizations"}

    def apply(self) -> Collaboration:
        data = self.cleaned_data
        if self.instance.pk is None:
            return services.collaboration_create(
                principal=self.principal,
                name=data["name"],
                organization_ids=self._ids("organizations"),
                encrypted=data["encrypted"],
            )
        collaboration = Collaboration.objects.get(pk=self.instance.pk)
        if changes := self._changed("name", "encrypted"):
            services.collaboration_update(principal=self.principal, collaboration=collaboration, data=changes)
        if "organizations" in self.changed_data:
            current = set(collaboration.organizations.values_list("pk", flat=True))
            wanted = self._kept_ids("organizations", current)
            for organization_id in sorted(wanted - current):
                services.collaboration_organization_add(
                    principal=self.principal, collaboration=collaboration, organization_id=organization_id
                )
            for organization_id in sorted(current - wanted):
                services.collaboration_organization_remove(
                    principal=self.principal, collaboration=collaboration, organization_id=organization_id
                )
        return collaboration


@admin.register(Collaboration)
class CollaborationAdmin(ScopedAdmin):
    resource = "collaboration"
    form = CollaborationForm
    list_display = ["name", "encrypted"]
    list_filter = ["encrypted"]
    search_fields = ["name"]
    fields = ["name", "encrypted", "organizations"]
    filter_horizontal = ["organizations"]
    inlines = [AlgorithmStoreInline]  # nodes adds the inline of its nodes

    def formfield_for_manytomany(
        self, db_field: ManyToManyField, request: HttpRequest, **kwargs: Any
    ) -> ModelMultipleChoiceField | None:
        if db_field.name == "organizations":
            kwargs["queryset"] = visible_organizations(self.principal(request))
            kwargs["required"] = False
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def delete_model(self, request: HttpRequest, obj: Collaboration) -> None:
        # The confirmation page lists the tasks, nodes and studies that go with it.
        services.collaboration_delete(
            principal=self.principal(request), collaboration=obj, delete_dependents=True
        )


# --- studies -------------------------------------------------------------------------------------------
class StudyForm(ServiceForm):
    class Meta:
        model = Study
        fields = ["name", "collaboration", "organizations"]

    def apply(self) -> Study:
        data = self.cleaned_data
        if self.instance.pk is None:
            return services.study_create(
                principal=self.principal,
                name=data["name"],
                collaboration_id=data["collaboration"].pk,
                organization_ids=self._ids("organizations"),
            )
        study = Study.objects.get(pk=self.instance.pk)
        changes = self._changed("name")
        if "organizations" in self.changed_data:
            current = set(study.organizations.values_list("pk", flat=True))
            changes["organization_ids"] = sorted(self._kept_ids("organizations", current))
        return services.study_update(principal=self.principal, study=study, data=changes)


@admin.register(Study)
class StudyAdmin(ScopedAdmin):
    resource = "study"
    form = StudyForm
    list_display = ["name", "collaboration"]
    list_select_related = ["collaboration"]
    list_filter = ["collaboration"]
    search_fields = ["name"]
    filter_horizontal = ["organizations"]

    def get_readonly_fields(self, request: HttpRequest, obj: Study | None = None) -> list[str]:
        return ["collaboration"] if obj is not None else []  # a study never moves

    def formfield_for_foreignkey(
        self, db_field: ForeignKey, request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField | None:
        if db_field.name == "collaboration":
            kwargs["queryset"] = self.principal(request).visible_or_none(
                "collaboration", Collaboration.objects.all()
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(
        self, db_field: ManyToManyField, request: HttpRequest, **kwargs: Any
    ) -> ModelMultipleChoiceField | None:
        if db_field.name == "organizations":
            kwargs["queryset"] = visible_organizations(self.principal(request))
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def delete_model(self, request: HttpRequest, obj: Study) -> None:
        services.study_delete(principal=self.principal(request), study=obj, delete_dependents=True)


# --- algorithm stores ------------------------------------------------------------------------------------
class AlgorithmStoreForm(ServiceForm):
    class Meta:
        model = AlgorithmStore
        fields = ["name"]

    def apply(self) -> AlgorithmStore:
        store = AlgorithmStore.objects.get(pk=self.instance.pk)
        return services.algorithm_store_update(
            principal=self.principal, store=store, data=self._changed("name")
        )


@admin.register(AlgorithmStore)
class AlgorithmStoreAdmin(ScopedAdmin):
    """Links of stores to collaborations (empty: all collaborations), renamed here.

    Links are made and removed through the API, which registers this server at the store and takes
    it off again with the caller's credentials there.
    """

    resource = "algorithmstore"
    form = AlgorithmStoreForm
    list_display = ["name", "url", "collaboration"]
    list_select_related = ["collaboration"]
    search_fields = ["name", "url"]
    fields = ["name", "url", "collaboration"]
    readonly_fields = ["url", "collaboration"]

    def allowed(self, principal: Principal, operation: str, obj: AlgorithmStore | None) -> bool:
        # Links are made and removed through the API only.
        return operation not in ("create", "delete") and super().allowed(principal, operation, obj)
