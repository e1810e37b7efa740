"""The base of every admin page: the API's rules for rows, actions, filters and writes.

A page shows the rows the rule engine lets the logged-in user see, judges each action as the matching
endpoint judges it, and writes only through the services the API uses, so every check and audit record
of the API holds here too. Filters accept only their declared parameters and offer only visible
choices: any other lookup would make the row count an oracle on fields the page never shows.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.models import LogEntry
from django.contrib.admin.utils import get_fields_from_path
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Field, Model, Q, QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.utils.module_loading import import_string

from vantage6.api.errors import ApiError

# The rule engine's principal of a logged-in user; its type is the accounts app's (settings.ADMIN_PRINCIPAL).
Principal = Any


@cache
def _principal_of() -> Any:
    return import_string(settings.ADMIN_PRINCIPAL)


class _DryRun(Exception):
    """Rolls back a service call made only to validate a form."""


class ServiceForm(forms.ModelForm):
    """A form whose save is a service call; ``clean`` runs that call once and rolls it back, so every
    refusal of the API shows as a form error."""

    principal: Principal

    def apply(self) -> Model:
        raise NotImplementedError

    def clean(self) -> dict:
        cleaned = cast(dict, super().clean())
        if self.errors:
            return cleaned
        try:
            with transaction.atomic():
                self.apply()
                raise _DryRun
        except _DryRun:
            pass
        except ApiError as exc:
            raise forms.ValidationError(str(exc.msg)) from None
        return cleaned

    def choices(self, name: str) -> forms.ModelChoiceField:
        """The relation field ``name``; its ``queryset`` is what the form offers."""
        return cast(forms.ModelChoiceField, self.fields[name])

    def _ids(self, name: str) -> list[int]:
        return [row.pk for row in self.cleaned_data.get(name) or []]

    def _changed(self, *names: str) -> dict:
        return {name: self.cleaned_data.get(name) for name in names if name in self.changed_data}

    def _kept_ids(self, name: str, current: set[int]) -> set[int]:
        """The chosen rows, plus current ones the field does not offer (the user cannot see them, so
        could not have taken them out)."""
        offered = set(cast(QuerySet, self.choices(name).queryset).values_list("pk", flat=True))
        return set(self._ids(name)) | (current - offered)


class VisibleRelatedFilter(admin.RelatedFieldListFilter):
    """A relation filter whose choices are the rows the related model's own admin page shows."""

    def field_choices(self, field, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        related_admin = model_admin.admin_site.get_model_admin(field.remote_field.model)
        return field.get_choices(
            include_blank=False,
            ordering=self.field_admin_ordering(field, request, model_admin),
            limit_choices_to=Q(pk__in=related_admin.get_queryset(request).values("pk")),
        )


class AdminPage(admin.ModelAdmin):
    """Filters of a page: the declared ones only (field names), relations offering visible choices."""

    def get_list_filter(self, request: HttpRequest) -> list:
        return [
            (name, VisibleRelatedFilter) if self._filtered_field(name).is_relation else name
            for name in self.list_filter
        ]

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        return lookup in self._filter_parameters()

    def _filter_parameters(self) -> set[str]:
        """The query parameters of the declared filters, named as Django's field filters name them,
        and those of the date drill-down."""
        parameters = set()
        if self.date_hierarchy:
            parameters |= {f"{self.date_hierarchy}__{part}" for part in ("year", "month", "day")}
        for name in self.list_filter:
            field = self._filtered_field(name)
            exact = f"{name}__{field.target_field.name}__exact" if field.is_relation else f"{name}__exact"
            parameters |= {exact, f"{name}__isnull"}
        return parameters

    def _filtered_field(self, name: object) -> Any:
        return get_fields_from_path(self.model, cast(str, name))[-1]


class ScopedAdmin(AdminPage):
    """Rows the rule engine shows the logged-in user; ``allowed`` judges each action like the API, and
    the form's ``apply`` and ``delete_model`` write through the API's services."""

    resource: str  # the resource name of the rule engine's row filters
    form = ServiceForm

    @staticmethod
    def principal(request: HttpRequest) -> Principal:
        return _principal_of()(request.user)

    def allowed(self, principal: Principal, operation: str, obj: Any) -> bool:
        """Without a row: whether any rule of the operation is held; with one: whether the scope of
        the rule engine reaches it, as the endpoint's check does."""
        if obj is None:
            return principal.max_scope(principal.rule_resource(self.resource), operation) is not None
        return principal.allows(self.resource, obj, operation)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        rows = self.principal(request).visible_or_none(self.resource, super().get_queryset(request))
        # The autocomplete view pages these rows as they come: unordered, a row could show on two pages
        # or on none. The change list orders them itself.
        return rows if rows.ordered else rows.order_by("pk")

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        """The row of a change, history or delete page, fetched by the rule engine (``get_for``); one
        out of reach is None, as a missing one, so the page cannot tell the two apart."""
        key = cast(Field, self.model._meta.pk)
        if from_field not in (None, key.name):
            return None  # no relation of these models points at another field
        try:
            return self.principal(request).get(
                super().get_queryset(request),
                key.to_python(object_id),
                missing=f"{self.opts.verbose_name} not found",
                resource=self.resource,
            )
        except (ApiError, ValidationError):
            return None

    def get_paginator(self, request: HttpRequest, queryset: QuerySet, *args: Any, **kwargs: Any) -> Any:
        if queryset.model is LogEntry:
            # A history page names who changed the row: only users the viewer may see (and itself), else
            # it would list the accounts of organizations whose users the viewer may not list.
            users = self.principal(request).visible_or_none("user", get_user_model().objects.all())
            queryset = queryset.filter(Q(user=request.user) | Q(user__in=users.values("pk")))
        return super().get_paginator(request, queryset, *args, **kwargs)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        principal = self.principal(request)
        return self.allowed(principal, "view", obj) or self.allowed(principal, "edit", obj)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.allowed(self.principal(request), "edit", obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.allowed(self.principal(request), "delete", obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.allowed(self.principal(request), "create", None)

    def get_form(
        self, request: HttpRequest, obj: Model | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        form = cast(type[ServiceForm], super().get_form(request, obj, change=change, **kwargs))
        form.principal = self.principal(request)
        return form

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        saved = form.apply()
        obj.pk = obj.id = saved.pk  # the admin logs and redirects to the row the service wrote

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: list, change: bool) -> None:
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)  # relations were set by the service

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        raise NotImplementedError  # each page deletes through its service

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        with transaction.atomic():  # all of them, or none where the service refuses one
            for obj in queryset:
                self.delete_model(request, obj)

    # A service may refuse a deletion the row's rule allows (its dependents beyond the caller's reach):
    # its message on the page, the deletion rolled back, as the API answers it.
    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None) -> Any:
        return self._refusal_shown(request, super().delete_view, object_id, extra_context)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> Any:
        return self._refusal_shown(request, super().changelist_view, extra_context)

    def _refusal_shown(self, request: HttpRequest, view: Callable[..., Any], *args: Any) -> Any:
        try:
            return view(request, *args)
        except ApiError as exc:
            self.message_user(request, str(exc.msg), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
