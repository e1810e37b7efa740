"""The OpenAPI document (``/api/schema``): what every operation of the API answers, in one place.

drf-spectacular describes each view from its serializers; this schema class adds what the API does the
same way everywhere: the ``{data, links}`` envelope of list endpoints and their headers and query
parameters, ``{"msg": ...}`` answers of deletions, the error bodies of the 4xx each kind of operation
returns, and which token (user, node, container, refresh) each operation takes.
"""

from __future__ import annotations

import copy
import inspect
import re
from typing import Any

from django.core.validators import EmailValidator, ProhibitNullCharactersValidator
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent, force_instance
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import Direction, OpenApiParameter, extend_schema_serializer
from rest_framework import serializers
from rest_framework.generics import GenericAPIView

from vantage6.api.fields import ListLinkField, RefField, TimestampField
from vantage6.api.lists import ListAction
from vantage6.api.pagination import MAX_PAGE_ARG, MAX_PER_PAGE, sortable_fields
from vantage6.api.params import LIKE_PATTERN, OneOf
from vantage6.api.sql import MAX_KEY
from vantage6.api.validators import BLANKS, StatedRule

# The security scheme of each client type's bearer token; all are JWTs from the token endpoints.
TOKEN_SCHEMES = {
    "user": ("userToken", "A user's access token (POST /token/user)."),
    "node": ("nodeToken", "A node's access token (POST /token/node)."),
    "container": ("containerToken", "An algorithm container's token (POST /token/container)."),
    "refresh": ("refreshToken", "A user's or node's refresh token (only for POST /token/refresh)."),
}

ERROR = {
    "type": "object",
    "description": "An error: what went wrong, in words.",
    "properties": {"msg": {"type": "string"}},
    "required": ["msg"],
}
VALIDATION_ERROR = {
    "type": "object",
    "description": (
        "A refused request: `msg` says why; a body that does not validate also has `errors`, the "
        "messages per field (`_schema` for the body as a whole)."
    ),
    "properties": {"msg": {"type": "string"}, "errors": {"type": "object", "additionalProperties": {}}},
    "required": ["msg"],
}
# Role endpoints answer validation errors as ``{"msg": {field: [...]}}``, a list's by item index
# (``{"rules": {"0": [...]}}``), as vantage6 does.
MESSAGES = {"type": "array", "items": {"type": "string"}}
ROLE_VALIDATION_ERROR = {
    "type": "object",
    "description": (
        "A refused request: `msg` is a text, or the messages per field of a body (per item of a list)."
    ),
    "properties": {
        "msg": {
            "anyOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "additionalProperties": {
                        "anyOf": [MESSAGES, {"type": "object", "additionalProperties": MESSAGES}]
                    },
                },
            ]
        }
    },
    "required": ["msg"],
}
LINKS = {
    "type": "object",
    "description": "Paths (with query) of the pages; `previous`, `next` and `last` only when they exist.",
    "properties": {name: {"type": "string"} for name in ("first", "previous", "self", "next", "last")},
    "required": ["first", "self"],
}

# What an error status means, for the document's readers.
ERROR_DESCRIPTIONS = {
    "400": "Bad request: invalid body or query, or refused by a rule of the data",
    "401": "No token, an invalid or expired one, or no permission",
    "403": "Forbidden",
    "404": "Not found",
    "413": "Request body too large",
    "415": "Request body is not JSON",
    "422": "Malformed token, or a token of the wrong kind",
    "429": "Too many requests: too many connections or failed attempts from this address, or calls at once",
    "501": "Not configured on this server",
    "502": "The algorithm store failed",
    "503": "The database cannot be reached now: try again after `Retry-After` seconds",
    "4XX": "The algorithm store refused (its status, and its message)",
}
# What any request may be answered, whatever its operation: a request the server cannot read (a bad
# header or query string), more connections from one address than it serves, the database down.
EVERY_OPERATION = ["400", "429", "503"]
BODY_METHODS = ("POST", "PATCH", "PUT")


@extend_schema_serializer(component_name="Message")
class MessageOutput(serializers.Serializer):
    """A success answer in words."""

    msg = serializers.CharField()


@extend_schema_serializer(component_name="Reference")
class ReferenceOutput(serializers.Serializer):
    """A reference to another object: its id, its path and the methods of that path."""

    id = serializers.IntegerField()
    link = serializers.CharField()
    methods = serializers.ListField(child=serializers.CharField())


# Naive ISO-8601 in UTC as ``datetime.isoformat`` writes it (no offset; microseconds only when not zero).
NAIVE_TIMESTAMP = {
    "type": "string",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?$",
    "description": "A UTC time without offset, e.g. `2024-01-01T10:00:00` or `2024-01-01T10:00:00.795264`.",
}


# The rules DRF's text fields check, as the document states them: no NUL character, and (where the field
# trims blanks and refuses an empty text) something besides blanks.
NO_NUL_CHARACTER = {"not": {"type": "string", "pattern": "\\u0000"}}
NOT_BLANK = {"pattern": f"[^{BLANKS}]"}
# What Django's e-mail validator asks of a domain beyond ``format: email``: a top-level part of two
# characters or more (``0@0.a`` is refused), an address literal, or ``localhost``.
EMAIL_DOMAIN = {"pattern": "@(localhost|.*([.][A-Za-z0-9\u00a1-\uffff-]{2,63}|\\]))$"}
BLANK = {"type": "string", "maxLength": 0}  # drf-spectacular's alternative of an empty text


def stated_rules(field: serializers.Field) -> list[dict]:
    """The JSON-schema keywords of the rules ``field`` checks beyond its type and DRF's own keywords."""
    rules = [validator.schema for validator in field.validators if isinstance(validator, StatedRule)]
    if isinstance(field, serializers.IPAddressField) and field.protocol == "both":
        forms = [{"format": "ipv4"}, {"format": "ipv6"}, *([{"maxLength": 0}] if field.allow_blank else [])]
        rules.append({"anyOf": forms})
    if any(isinstance(v, EmailValidator) for v in field.validators):
        rules.append(EMAIL_DOMAIN)
    if isinstance(field, serializers.ListField) and not field.allow_empty:
        rules.append({"minItems": 1})
    if isinstance(field, serializers.CharField):
        if any(isinstance(v, ProhibitNullCharactersValidator) for v in field.validators):
            rules.append(NO_NUL_CHARACTER)
        if field.trim_whitespace and not field.allow_blank:
            rules.append(NOT_BLANK)
    return rules


# Bounds that two rules give once: the tighter of the two.
_TIGHTER = {
    "minLength": max, "maxLength": min, "minimum": max, "maximum": min, "minItems": max, "maxItems": min,
}  # fmt: skip


def add_rule(schema: dict, rule: dict) -> None:
    """Add ``rule``'s keywords to ``schema``; a keyword it already has is added alongside (``allOf``)."""
    for keyword, value in copy.deepcopy(rule).items():
        if keyword == "allOf":
            schema.setdefault("allOf", []).extend(value)
        elif keyword not in schema:
            schema[keyword] = value
        elif keyword in _TIGHTER:
            schema[keyword] = _TIGHTER[keyword](schema[keyword], value)
        elif schema[keyword] != value:
            schema.setdefault("allOf", []).append({keyword: value})


def _refuses_empty(serializer: serializers.Serializer) -> bool:
    """Whether a rule of the body as a whole refuses an empty body."""
    for rule in serializer.validators:
        if isinstance(rule, StatedRule):
            try:
                rule({})
            except serializers.ValidationError:
                return True
    return False


def _nullable_in_model(field: serializers.Field, attname: str) -> bool:
    """Whether the model column behind an output field may be null (a computed value may be)."""
    model = field.parent.Meta.model  # type: ignore[attr-defined]  # an OutputSerializer
    try:
        return next(f for f in model._meta.concrete_fields if attname in (f.name, f.attname)).null
    except StopIteration:
        return True


def _nullable(schema: dict, nullable: bool) -> dict:
    if not nullable:
        return schema
    if "$ref" in schema:
        return {"allOf": [schema], "nullable": True}
    return {**schema, "nullable": True}


class TimestampFieldSchema(OpenApiSerializerFieldExtension):
    target_class = TimestampField
    match_subclasses = True

    def map_serializer_field(self, auto_schema: AutoSchema, direction: Direction) -> dict:
        field = self.target
        return _nullable(dict(NAIVE_TIMESTAMP), _nullable_in_model(field, field.source))


class RefFieldSchema(OpenApiSerializerFieldExtension):
    target_class = RefField

    def map_serializer_field(self, auto_schema: AutoSchema, direction: Direction) -> dict:
        field = self.target
        reference = auto_schema.resolve_serializer(ReferenceOutput, direction).ref
        return _nullable(reference, _nullable_in_model(field, field.fk_attr or f"{field.field_name}_id"))


class ListLinkFieldSchema(OpenApiSerializerFieldExtension):
    target_class = ListLinkField

    def map_serializer_field(self, auto_schema: AutoSchema, direction: Direction) -> dict:
        return {"type": "string", "description": f"Path of the list of the related {self.target.resource}s."}


class Embeddable(serializers.Field):
    """For the schema of a method field: a link (string) or reference, or the embedded object(s) when
    the request asks for them (``output`` may be given as a function, for classes defined later)."""

    def __init__(self, output: object, *, many: bool = False, reference: bool = False) -> None:
        self.output, self.many, self.reference = output, many, reference
        super().__init__(read_only=True)


class EmbeddableSchema(OpenApiSerializerFieldExtension):
    target_class = Embeddable

    def map_serializer_field(self, auto_schema: AutoSchema, direction: Direction) -> dict:
        field = self.target
        output = field.output if isinstance(field.output, type) else field.output()
        embedded = auto_schema.resolve_serializer(output, direction).ref
        if field.many:
            embedded = {"type": "array", "items": embedded}
        link = (
            auto_schema.resolve_serializer(ReferenceOutput, direction).ref
            if field.reference
            else {"type": "string"}
        )
        return {"oneOf": [link, embedded]}


def _sort_rule(view: object) -> dict:
    """The ``sort`` values a list takes (``sort_order``): its sort keys, each with signs in front,
    comma-separated, blanks around them and empty items allowed."""
    output = getattr(view, "serializer_class", None)
    if output is None or not hasattr(getattr(output, "Meta", None), "model"):
        return {}
    key = f"[+-]*({'|'.join(re.escape(name) for name in sorted(sortable_fields(output)))})"
    item = rf"[{BLANKS}]*({key})?[{BLANKS}]*"
    return {"pattern": f"^{item}(,{item})*$"}


class Envelope:
    """The list envelope of ``vantage6.api.pagination.paginate``, described for the schema."""

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return {
            "type": "object",
            "properties": {"data": schema, "links": LINKS},
            "required": ["data", "links"],
        }

    def get_schema_operation_parameters(self, view: object) -> list[dict]:
        def integer(name: str, description: str) -> dict:
            return {
                "name": name,
                "in": "query",
                "required": False,
                "description": description,
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_ARG},
            }

        return [
            integer("page", "Page number (default 1)."),
            integer("per_page", f"Rows per page (default 10; larger pages come in pages of {MAX_PER_PAGE})."),
            {
                "name": "sort",
                "in": "query",
                "required": False,
                "description": "Comma-separated fields to sort by; `-` in front sorts descending.",
                "schema": {"type": "string", **_sort_rule(view)},
            },
        ]


LIST_HEADERS = [
    OpenApiParameter(
        "total-count", int, OpenApiParameter.HEADER, response=[200], required=True,
        description="Number of matching rows on all pages.",
    ),
    OpenApiParameter(
        "Link", str, OpenApiParameter.HEADER, response=[200], required=True,
        description="The `links` as `<path>; rel=<name>`, comma-separated.",
    ),
]  # fmt: skip

FLAG_VALUES = "any non-empty value but `false` or `0`, in any case, is true"


def flag_parameter(name: str, description: str) -> OpenApiParameter:
    """A vantage6 flag: true when given a non-empty value other than ``false`` or ``0`` (``yes`` too, as in
    vantage6), so its values are text, not only what a boolean is written as."""
    return OpenApiParameter(name, str, description=f"{description} ({FLAG_VALUES}).")


DELETE_DEPENDENTS = flag_parameter("delete_dependents", "Also delete what depends on it")


# The kinds of query filters: the schema of their values and what they mean. Every value is without a
# NUL character, and an integer one that the database's integers hold (``vantage6.api.params``).
_TEXT = {"type": "string", **NO_NUL_CHARACTER}
_INTEGER = {"type": "integer", "minimum": -MAX_KEY - 1, "maximum": MAX_KEY}
_LIKE = {"type": "string", "allOf": [NO_NUL_CHARACTER, LIKE_PATTERN.schema]}
FILTER_KINDS: dict[str, tuple[Any, str]] = {
    "id": (_INTEGER, "Only rows related to the object with this id."),
    "int": (_INTEGER, "An integer."),
    "text": (_TEXT, "Exact value."),
    "like": (_LIKE, "SQL LIKE pattern (`%` any text, `_` one character, `\\` the next character as it is)."),
    "date": (OpenApiTypes.DATE, "A day, YYYY-MM-DD."),
    "time": ({"type": "string", "format": "date-time"}, "An ISO-8601 date or time."),
    "flag": (_TEXT, f"A flag ({FLAG_VALUES})."),
    "bool": (bool, "1, 0, true or false."),
    "ids": ({"type": "array", "items": _INTEGER}, "Ids, repeated or comma-separated."),
    "likes": (_LIKE, "SQL LIKE patterns, repeated: a row matches any of them."),
    "list": (_TEXT, "Values, repeated or comma-separated."),
}


def filters(**kinds: str | OneOf) -> list[OpenApiParameter]:
    """The query filters of a list endpoint, by name and kind (see ``FILTER_KINDS``; or ``OneOf`` its
    values)."""
    return [
        OpenApiParameter(
            name, {"type": "string", "enum": list(kind.values)}, description="One of the values."
        )
        if isinstance(kind, OneOf)
        else OpenApiParameter(name, FILTER_KINDS[kind][0], description=FILTER_KINDS[kind][1])
        for name, kind in kinds.items()
    ]


def include(*values: str) -> OpenApiParameter:
    """The ``include`` query parameter that embeds related objects (comma-separated or repeated)."""
    return OpenApiParameter("include", str, description=f"Embed related objects: {', '.join(values)}.")


class ApiSchema(AutoSchema):
    """The schema of one operation, with the conventions of the whole API (see the module doc)."""

    _direction: Direction | None = None  # of the serializer being mapped

    def _action(self) -> str | None:
        return getattr(self.view, "action", None)

    def _is_list(self) -> bool:
        return self._action() == "list"

    def get_description(self) -> str:  # type: ignore[override]  # drf-spectacular's signature
        # The docstrings of the handler and of the view class itself; not those of base classes.
        handler = getattr(self.view, self._action() or self.method.lower(), None)
        docs = (handler.__doc__ if handler else None, self.view.__class__.__dict__.get("__doc__"))
        return inspect.cleandoc(next((doc for doc in docs if doc), ""))

    def get_serializer_name(self, serializer: serializers.Serializer, direction: Direction) -> str:
        name = super().get_serializer_name(serializer, direction)
        return name.removesuffix("Output").removesuffix("Input")

    def _get_paginator(self) -> Envelope | None:
        return Envelope() if self._is_list() else None

    def _get_parameters(self) -> list[dict]:
        parameters = super()._get_parameters()
        for parameter in parameters:
            schema = parameter.get("schema", {})
            # Every query value with a NUL character is refused (``vantage6.api.params``): said of the
            # text ones no pattern, format or list of values says it of already.
            if parameter["in"] == "query" and schema.get("type") == "string" and schema.keys() == {"type"}:
                add_rule(schema, NO_NUL_CHARACTER)
        return parameters

    def get_override_parameters(self) -> list:
        if not self._is_list():
            return super().get_override_parameters()
        declared = []
        if isinstance(self.view, ListAction):
            if self.view.INCLUDES:
                declared.append(include(*self.view.INCLUDES))
            declared += self.view.FILTERS.parameters
        return [*super().get_override_parameters(), *declared, *LIST_HEADERS]

    def _map_basic_serializer(self, serializer: serializers.Serializer, direction: Direction) -> dict:
        # The direction of the fields being mapped, for ``_insert_field_validators`` (nested serializers
        # are mapped within, each with its own).
        outer, self._direction = self._direction, direction
        try:
            schema = super()._map_basic_serializer(serializer, direction)
        finally:
            self._direction = outer
        if direction == "request":
            for rule in serializer.validators:
                if isinstance(rule, StatedRule):
                    add_rule(schema, rule.schema)
            if getattr(serializer, "refuses_unknown_keys_only", False):
                schema["additionalProperties"] = False  # its keys are the only ones it takes
        if type(serializer).__module__ != __name__:
            schema.pop("description", None)  # serializer docstrings are written for developers
        if direction == "response":
            # Every field of an answer is always there (null when empty), except those a
            # serializer names as optional.
            optional = getattr(serializer, "optional_fields", ())
            required = [name for name in schema.get("properties", {}) if name not in optional]
            if required:
                schema["required"] = required
            if isinstance(serializer, MessageOutput):
                # Closed, so that a message is told apart from answers that also carry a ``msg``.
                schema["additionalProperties"] = False
        return schema

    def _map_serializer_field(
        self, field: serializers.Field, direction: Direction, bypass_extensions: bool = False
    ) -> dict:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        other = getattr(field, "also_takes", None)
        if direction != "request" or other is None:
            return schema
        # A field that also takes another form of its value (``also_takes``, a field): either form.
        self._insert_field_validators(field, schema)
        alternative = self._map_serializer_field(other, direction)
        self._insert_field_validators(other, alternative)
        return {"oneOf": [schema, alternative]}

    def _get_serializer(self) -> Any:
        # A view without a serializer class has none to give: each of its operations declares its own
        # (asked of a deletion's body, which may be declared or not).
        view = self.view
        if getattr(view, "serializer_class", None) is None and (
            getattr(type(view), "get_serializer_class", None) in (None, GenericAPIView.get_serializer_class)
        ):
            return None
        return super()._get_serializer()

    def _declares_delete_body(self) -> bool:
        """Whether this is a deletion that reads a body (``DELETE .../organization`` takes the id), which
        drf-spectacular leaves out: only a serializer declared for it (``extend_schema``) is one."""
        if self.method != "DELETE":
            return False
        declared = force_instance(self.get_request_serializer())
        implied = getattr(self.view, "serializer_class", None)  # what every method of the view gets
        return isinstance(declared, serializers.Serializer) and type(declared) is not implied

    def _get_request_body(self, direction: Direction = "request") -> dict | None:
        if self._declares_delete_body():
            # Mapped as a POST's body is; a deletion's body is required (its id is).
            self.method = "POST"
            try:
                body = super()._get_request_body(direction)
            finally:
                self.method = "DELETE"
            if body:
                body["required"] = True
            return body
        body = super()._get_request_body(direction)
        # No body is read as ``{}``: one that a rule of the body refuses empty is required.
        if body and self.method in BODY_METHODS:
            serializer = force_instance(self.get_request_serializer())
            if isinstance(serializer, serializers.Serializer) and _refuses_empty(serializer):
                body["required"] = True
        return body

    def _insert_field_validators(self, field: serializers.Field, schema: dict) -> None:
        super()._insert_field_validators(field, schema)
        # What a request's field must be, said by its validators (answers are not checked by them); for
        # a text that may also be empty, said of the text that is not (drf-spectacular's ``oneOf``).
        if self._direction == "request":
            target = schema["oneOf"][0] if schema.get("oneOf", [None])[-1] == BLANK else schema
            for rule in stated_rules(field):
                add_rule(target, rule)

    # --- security ---------------------------------------------------------------------------------
    def _clients(self) -> tuple[str, ...]:
        if not self.view.authentication_classes:
            return ()
        if any(getattr(a, "accept_refresh", False) for a in self.view.authentication_classes):
            return ("refresh",)
        return getattr(self.view, "action_clients", {}).get(self._action(), getattr(self.view, "clients", ()))

    def get_auth(self) -> list[dict]:
        requirements: list[dict] = []
        for client in self._clients():
            name, description = TOKEN_SCHEMES[client]
            self.registry.register_on_missing(
                ResolvedComponent(
                    name=name,
                    type=ResolvedComponent.SECURITY_SCHEMA,
                    object=name,
                    schema={
                        "type": "http",
                        "scheme": "bearer",
                        "bearerFormat": "JWT",
                        "description": description,
                    },
                )
            )
            requirements.append({name: []})
        return requirements

    # --- responses --------------------------------------------------------------------------------
    def _component(self, name: str, schema: dict) -> dict:
        component = ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, object=name, schema=schema)
        self.registry.register_on_missing(component)
        return component.ref

    def _error_statuses(self) -> list[str]:
        """The errors an operation of this kind can answer (views declare the others)."""
        has_request = self.method in BODY_METHODS or self._declares_delete_body()
        request = self.get_request_serializer() if has_request else None
        has_body, raw_body = request is not None, isinstance(request, dict)
        has_path_ids = "{" in self.path
        authenticated = bool(self._clients())
        statuses = list(EVERY_OPERATION)
        if authenticated:
            statuses += ["401", "422"]
        if has_path_ids or self._is_list() or (authenticated and self.method in (*BODY_METHODS, "DELETE")):
            statuses.append("404")
        if has_body:
            statuses.append("413")
        if has_body and not raw_body:  # JSON only
            statuses.append("415")
        return statuses

    def _get_response_bodies(self, direction: Direction = "response") -> dict:
        responses = super()._get_response_bodies(direction)
        if "204" in responses:  # deletions answer what they did
            del responses["204"]
            responses["200"] = self._get_response_for_code(MessageOutput, "200", direction=direction)
        for status in self._error_statuses():
            responses.setdefault(status, {})
        for status, response in responses.items():
            if status.startswith(("4", "5")) and not response.get("content"):
                response.update(self._error_response(status))
        return dict(sorted(responses.items()))

    def _error_response(self, status: str) -> dict:
        if status == "400" and getattr(self.view, "field_errors_in_msg", False):
            name, schema = "RoleValidationError", ROLE_VALIDATION_ERROR
        elif status == "400":
            name, schema = "ValidationError", VALIDATION_ERROR
        else:
            name, schema = "Error", ERROR
        return {
            "description": ERROR_DESCRIPTIONS.get(status, "Error"),
            "content": {"application/json": {"schema": self._component(name, schema)}},
        }


# --- links ---------------------------------------------------------------------------------------------
HTTP_METHODS = ("get", "put", "post", "patch", "delete")
PATH_PARAMETER = re.compile(r"\{([^}]+)\}")


def _created_fields(document: dict, response: dict) -> set[str]:
    """The fields of a creation's JSON answer (its schema's properties, through a component)."""
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    if ref := schema.get("$ref"):
        schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return set(schema.get("properties", {}))


def link_creations(result: dict, **_context: object) -> dict:
    """drf-spectacular post-processing hook: a creation's answer links to the operations on what it
    created (``POST /api/role`` to ``GET``, ``PATCH`` and ``DELETE /api/role/{id}``), the created row's
    key taken from the answer. Clients, and tests driven by the document, can follow what they create
    instead of guessing ids."""
    paths = result["paths"]
    for path, item in paths.items():
        responses = item.get("post", {}).get("responses", {})
        status = next((status for status in ("201", "200") if status in responses), None)
        if status is None or "{" in path:
            continue
        fields = _created_fields(result, responses[status])
        links = {}
        for target, target_item in paths.items():
            key = PATH_PARAMETER.fullmatch(target.removeprefix(f"{path}/").split("/", 1)[0])
            if not target.startswith(f"{path}/") or key is None or key[1] not in fields:
                continue
            if set(PATH_PARAMETER.findall(target)) != {key[1]}:
                continue  # another key in the path (a rule's id) the answer does not give
            for method in HTTP_METHODS:
                if method in target_item:
                    operation_id = target_item[method]["operationId"]
                    links[operation_id] = {
                        "operationId": operation_id,
                        "parameters": {f"path.{key[1]}": f"$response.body#/{key[1]}"},
                    }
        if links:
            responses[status]["links"] = links
    return result
