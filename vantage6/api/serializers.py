"""The base of the output serializers: DRF's representation, computed from a plan made once per class."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.db.models import Manager, Model
from rest_framework import serializers
from rest_framework.utils.serializer_helpers import BindingDict

from vantage6.api import references
from vantage6.api.fields import ListLinkField, RefField, TimestampField, format_datetime

Step = Callable[[serializers.Serializer, object], object]

# Field classes whose representation of a non-null value is a builtin conversion (as in DRF).
_BUILTIN = {serializers.CharField: str, serializers.IntegerField: int}


class _Unusual(Exception):
    """A row the plan does not cover (e.g. a missing attribute): DRF's own path handles it."""


def _step(model: type[Model], name: str, field: serializers.Field) -> Step:
    """``(serializer, instance) -> value`` of one readable field, as ``Serializer.to_representation``
    computes it (a null attribute is null without asking the field)."""
    if isinstance(field, serializers.SerializerMethodField):
        method = field.method_name
        return lambda serializer, instance: getattr(serializer, method)(instance)
    if isinstance(field, RefField):
        resource, attr = field.resource, field.fk_attr or f"{name}_id"
        return lambda _serializer, instance: references.ref(resource, getattr(instance, attr))
    if isinstance(field, ListLinkField):
        # ``list_link``'s string, its constant part made once (the API path is read per row: it
        # follows the setting).
        tail, pk = f"/{field.resource}?{field.filter_name}=", model._meta.pk.attname
        return lambda _serializer, instance: f"{references.API_PATH}{tail}{getattr(instance, pk)}"
    attrs = field.source_attrs
    if len(attrs) != 1 or callable(getattr(model, attrs[0], None)):

        def general(_serializer: serializers.Serializer, instance: object) -> object:
            attribute = field.get_attribute(instance)  # may skip the field: DRF's path then
            return None if attribute is None else field.to_representation(attribute)

        return general
    attr = attrs[0]
    convert = format_datetime if isinstance(field, TimestampField) else _BUILTIN.get(type(field))
    convert = convert or field.to_representation

    def value(_serializer: serializers.Serializer, instance: object) -> object:
        try:
            raw = getattr(instance, attr)
        except ObjectDoesNotExist:  # a missing related object is null to DRF
            return None
        except AttributeError:
            raise _Unusual from None
        return None if raw is None else convert(raw)

    return value


class OutputSerializer(serializers.ModelSerializer):
    """An output serializer whose rows cost one function call per field, with DRF's output.

    DRF builds (deep-copies) the fields of every serializer instance and calls each field's
    ``get_attribute`` and ``to_representation`` per row. Here the readable fields of one instance
    made per class give a list of steps; method fields are still called on the serializer in use
    (with its context). Anything unusual for a row (a mapping, a missing attribute, a skipped
    field) goes through DRF's own ``to_representation``.
    """

    _plans: dict[type, list[tuple[str, Step]]] = {}
    # A model's time is shown as every time of the API is, naive UTC, and documented so (DRF's own
    # field is documented as an RFC 3339 time, which needs an offset).
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.DateTimeField: TimestampField,
    }

    @classmethod
    def _plan(cls) -> list[tuple[str, Step]]:
        plan = OutputSerializer._plans.get(cls)
        if plan is None:
            template, model = cls(context={}), cls.Meta.model
            plan = [
                (str(f.field_name), _step(model, str(f.field_name), f)) for f in template._readable_fields
            ]
            OutputSerializer._plans[cls] = plan
        return plan

    def to_representation(self, instance: object) -> dict:
        shown = _planned(self, self._plan(), instance)
        return shown if shown is not None else super().to_representation(instance)

    @classmethod
    def represent(cls, rows: Iterable | Manager, context: dict | None = None) -> list[dict]:
        """``cls(rows, many=True, context=context).data``, without DRF's list serializer and the
        serializer set up for it on every call (more than the rows of a page cost to represent)."""
        context = context or {}
        # The plan's method fields read the context only (``self.context``); a row that needs DRF's
        # own path gets a serializer set up as DRF sets it up.
        serializer: Any = object.__new__(cls)
        serializer.parent, serializer._context = None, context
        plan, shown = cls._plan(), []
        for row in rows.all() if isinstance(rows, Manager) else rows:
            one = _planned(serializer, plan, row)
            shown.append(cls(context=context).to_representation(row) if one is None else one)
        return shown

    @classmethod
    def one(cls, row: object, context: dict | None = None) -> dict:
        """``cls(row, context=context).data`` as ``represent`` gives it: the same body, without a
        serializer set up for the one row."""
        return cls.represent([row], context)[0]


def _planned(serializer: serializers.Serializer, plan: list[tuple[str, Step]], row: object) -> dict | None:
    """The representation of ``row`` by the steps of ``plan``; None for a row they do not cover."""
    if isinstance(row, Mapping):
        return None
    try:
        return {name: step(serializer, row) for name, step in plan}
    except (_Unusual, serializers.SkipField):
        return None


def validated(serializer_class: type[serializers.Serializer], data: object, **kwargs: Any) -> dict:
    """The validated body; a 400 with the field errors otherwise (also for non-object bodies)."""
    if errors := _type_errors(_fields_of(serializer_class), data):
        raise serializers.ValidationError(errors)
    if not kwargs:
        plan = _validation_plan(serializer_class)
        if plan is not None:
            quick = _quickly_validated(plan, data)
            if quick is not None:
                return quick
    serializer = serializer_class(data=data, **kwargs)
    if not kwargs:
        _reuse_fields(serializer)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


_per_thread = threading.local()


def _fields_of(serializer_class: type[serializers.Serializer]) -> Mapping[str, serializers.Field]:
    fields: dict[type, Mapping[str, serializers.Field]] = _per_thread.__dict__.setdefault("typed", {})
    if serializer_class not in fields:
        fields[serializer_class] = serializer_class().fields
    return fields[serializer_class]


def _type_errors(fields: Mapping[str, serializers.Field], data: object) -> dict[str, Any]:
    """The errors of the values in ``data`` (and in the objects and lists within it) that are not of the
    JSON type their field is documented with. DRF turns a number into text and takes ``0``, ``1``,
    ``"yes"`` or ``"off"`` for a boolean: a value the API document does not allow would be stored."""
    if type(data) is not dict:
        return {}  # DRF's own answer to a body that is not an object
    errors: dict[str, Any] = {}
    for name, field in fields.items():
        value = data.get(name)
        if value is None or field.read_only:
            continue
        json_type = (
            bool
            if isinstance(field, serializers.BooleanField)
            else str
            if isinstance(field, serializers.CharField)
            else None
        )
        numbers_taken = type(value) is int and getattr(field, "takes_numbers", False)
        if json_type is not None and type(value) is not json_type and not numbers_taken:
            errors[name] = [field.error_messages["invalid"]]
        elif isinstance(field, serializers.Serializer):
            if inner := _type_errors(field.fields, value):
                errors[name] = inner
        elif isinstance(field, serializers.ListSerializer) and type(value) is list:
            child = field.child.fields if isinstance(field.child, serializers.Serializer) else {}
            if items := {i: e for i, item in enumerate(value) if (e := _type_errors(child, item))}:
                errors[name] = items
    return errors


# The fields of a flat body by name, for ``_quickly_validated``.
ValidationPlan = dict[str, serializers.Field]

_FIELD_STEPS = (serializers.Field.run_validation, serializers.CharField.run_validation)


def _validation_plan(serializer_class: type[serializers.Serializer]) -> ValidationPlan | None:
    """The fields of ``serializer_class`` (built once per thread, as ``_reuse_fields``) where DRF's
    validation of a body is, field by field, each field's ``to_internal_value`` and validators; None
    where it does more (a serializer's own checks, nested or read-only fields, defaults, renamed
    sources, a ``to_internal_value`` of its own that does more than refuse unknown keys)."""
    plans: dict[type, ValidationPlan | None] = _per_thread.__dict__.setdefault("plans", {})
    if serializer_class in plans:
        return plans[serializer_class]
    template = serializer_class()
    fields = dict(template.fields)
    own_steps = serializer_class.to_internal_value is not serializers.Serializer.to_internal_value
    plain = (
        serializer_class.run_validation is serializers.Serializer.run_validation
        and serializer_class.validate is serializers.Serializer.validate
        and (not own_steps or getattr(serializer_class, "refuses_unknown_keys_only", False))
        and not template.validators
        and all(
            type(field).run_validation in _FIELD_STEPS
            and type(field).get_value is serializers.Field.get_value
            and type(field).validate_empty_values is serializers.Field.validate_empty_values
            and not field.read_only
            and field.default is serializers.empty
            and field.source_attrs == [name]
            and not hasattr(template, f"validate_{name}")
            and field.validators is not None  # built now, not while validating
            for name, field in fields.items()
        )
    )
    plans[serializer_class] = plan = fields if plain else None
    return plan


def _quickly_validated(plan: ValidationPlan, data: object) -> dict | None:
    """A body DRF would find valid, validated as DRF validates it (the same values in the same order),
    without the serializer set up around its fields. None for anything else, which DRF then validates
    (and answers, when it is not valid): a body that is not a JSON object, has keys it does not
    declare, lacks a required one, has a blank string or any value a field or validator refuses."""
    if type(data) is not dict or not data.keys() <= plan.keys():
        return None
    validated_data: dict = {}
    for name, field in plan.items():
        if name not in data:
            if field.required:
                return None
            continue
        value = data[name]
        if value is None:
            if not field.allow_null:
                return None
        elif isinstance(field, serializers.CharField) and not (type(value) is str and value.strip()):
            return None  # DRF's own handling of blank strings
        else:
            try:
                value = field.to_internal_value(value)
                field.run_validators(value)
            except (serializers.ValidationError, DjangoValidationError, serializers.SkipField):
                return None
        validated_data[name] = value
    return validated_data


def _reuse_fields(serializer: serializers.Serializer) -> None:
    """Give ``serializer`` the fields of its class built once per thread, bound to it.

    DRF deep-copies the declared fields for every serializer instance; validating a request body
    needs them only for the call (fields keep no state between validations), and one thread validates
    one body at a time.
    """
    cache: dict[type, BindingDict] = _per_thread.__dict__.setdefault("fields", {})
    fields = cache.get(type(serializer))
    if fields is None:
        cache[type(serializer)] = serializer.fields
        return
    fields.serializer = serializer
    for field in fields.values():
        field.parent = serializer
    serializer.__dict__["fields"] = fields  # what the ``fields`` cached property would hold


class StrictSerializer(serializers.Serializer):
    """Refuses keys it does not declare."""

    refuses_unknown_keys_only = True  # its own step of validation (``validated``'s quick path)

    def to_internal_value(self, data: Any) -> dict:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        return super().to_internal_value(data)
