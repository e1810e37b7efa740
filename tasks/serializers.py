"""Output and input serializers of tasks, runs, results and ports."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from tasks.models import AlgorithmPort, Run, Task, TaskStatus
from vantage6.api.fields import IdField, ListLinkField, RefField, TimestampField
from vantage6.api.params import parse_datetime
from vantage6.api.references import list_link, ref
from vantage6.api.schema import Embeddable, ReferenceOutput
from vantage6.api.serializers import OutputSerializer, StrictSerializer
from vantage6.api.validators import HTTP_URL, AnyKeyRequired, TextPattern, UniqueItems, not_a_number


# --- output -------------------------------------------------------------------------------------------
class PortOutput(OutputSerializer):
    class Meta:
        model = AlgorithmPort
        fields = ["id", "port", "label"]


def _database_entries(task: Task) -> list[dict]:
    """As ``selectors.attach_task_details`` sets them on the tasks of a read; from the relation otherwise."""
    entries = getattr(task, "database_entries", None)
    if entries is None:
        entries = [{"label": db.database, "parameters": db.parameters} for db in task.databases.all()]
    return entries


class TaskOutput(OutputSerializer):
    """A task; ``include`` in the context embeds runs and/or results.

    Expects a task with prefetched (or attached) ``databases``, and ``runs`` when included.
    """

    created_at = TimestampField()
    status = serializers.CharField()
    finished_at = TimestampField()
    collaboration = RefField("collaboration")
    parent = RefField("task", "parent_id")  # type: ignore[assignment]  # the parent task, not the serializer
    init_org = RefField("organization")
    init_user = RefField("user")
    study = RefField("study")
    algorithm_store = RefField("algorithmstore")
    databases = serializers.SerializerMethodField()
    runs = serializers.SerializerMethodField()
    results = serializers.SerializerMethodField()
    children = ListLinkField("task", "parent_id")

    class Meta:
        model = Task
        fields = [
            "id", "name", "description", "image", "job_id", "created_at", "status", "finished_at",
            "collaboration", "parent", "init_org", "init_user", "study", "algorithm_store", "databases",
            "runs", "results", "children",
        ]  # fmt: skip

    @extend_schema_field(
        {
            "type": "array",
            "items": {
                "type": "object",
                "description": "`parameters`: JSON of the other keys of the database (query, ...).",
                "properties": {"label": {"type": "string"}, "parameters": {"type": "string"}},
                "required": ["label", "parameters"],
            },
        }
    )
    def get_databases(self, task: Task) -> list[dict]:
        return _database_entries(task)

    @extend_schema_field(Embeddable(lambda: RunOutput, many=True))
    def get_runs(self, task: Task) -> list[dict] | str:
        if "runs" in self.context.get("include", ()):
            return RunOutput.represent(task.runs.all())
        return list_link("run", task_id=task.pk)

    @extend_schema_field(Embeddable(lambda: ResultOutput, many=True))
    def get_results(self, task: Task) -> list[dict] | str:
        if "results" in self.context.get("include", ()):
            return ResultOutput.represent(task.runs.all())
        return list_link("result", task_id=task.pk)


class EmbeddedTaskOutput(TaskOutput):
    """A task embedded in its run: without its runs."""

    class Meta(TaskOutput.Meta):
        fields = [name for name in TaskOutput.Meta.fields if name != "runs"]


class RunOutput(OutputSerializer):
    """A run; ``node`` comes from ``selectors.attach_nodes``, the embedded task from the context, the
    ports from ``selectors.attach_run_details`` (or the relation)."""

    assigned_at = TimestampField()
    started_at = TimestampField()
    finished_at = TimestampField()
    cleanup_at = TimestampField()
    organization = RefField("organization")
    task = serializers.SerializerMethodField()
    results = serializers.SerializerMethodField()
    node = serializers.SerializerMethodField()
    ports = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "id", "input", "assigned_at", "started_at", "finished_at", "status", "log", "cleanup_at",
            "blob_storage_used", "organization", "task", "results", "node", "ports",
        ]  # fmt: skip

    @extend_schema_field(Embeddable(EmbeddedTaskOutput, reference=True))
    def get_task(self, run: Run) -> dict | None:
        if self.context.get("include_task"):
            return EmbeddedTaskOutput(run.task).data
        return ref("task", run.task_id)

    @extend_schema_field(ReferenceOutput)
    def get_results(self, run: Run) -> dict | None:
        return ref("result", run.pk)

    @extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "description": "The node of the run's organization in the task's collaboration.",
            "properties": {
                "id": {"type": "integer"},
                "ip": {"type": "string", "nullable": True},
                "status": {"type": "string", "nullable": True},
                "name": {"type": "string"},
            },
            "required": ["id", "ip", "status", "name"],
        }
    )
    def get_node(self, run: Run) -> dict | None:
        return getattr(run, "node_info", None)

    @extend_schema_field(PortOutput(many=True, read_only=True))
    def get_ports(self, run: Run) -> list[dict]:
        entries = getattr(run, "port_entries", None)
        if entries is None:
            entries = PortOutput.represent(run.ports.all())
        return entries


class ResultOutput(OutputSerializer):
    cleanup_at = TimestampField()
    run = serializers.SerializerMethodField()
    task = RefField("task")

    class Meta:
        model = Run
        fields = ["id", "result", "cleanup_at", "blob_storage_used", "run", "task"]

    @extend_schema_field(ReferenceOutput)
    def get_run(self, run: Run) -> dict | None:
        return ref("run", run.pk)


# --- input --------------------------------------------------------------------------------------------
class SurrogateValidator(ProhibitSurrogateCharactersValidator):
    """DRF's check by the UTF-8 encoder, which stops at the first surrogate; DRF's walks the string in
    Python (~1 ms for a 10 KiB result), a regex search takes ~60 µs, the encoder ~1 µs."""

    def __call__(self, value: object) -> None:
        text = str(value)
        try:
            text.encode()
        except UnicodeEncodeError as exc:  # only a surrogate cannot be encoded in UTF-8
            raise ValidationError(
                self.message.format(code_point=ord(text[exc.start])), code=self.code
            ) from None


class StrictCharField(serializers.CharField):
    """A string and only a string (DRF would turn numbers into strings); stored exactly as sent."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        self.validators = [
            SurrogateValidator() if isinstance(v, ProhibitSurrogateCharactersValidator) else v
            for v in self.validators
        ]

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field(
    {
        "type": "string",
        "format": "date-time",
        "description": "An ISO-8601 date or time (UTC when without offset).",
    }
)
class IsoDateTimeField(serializers.Field):
    """Any ISO-8601 date or datetime, stored as naive UTC."""

    default_error_messages = {"invalid": "Not a valid ISO-8601 datetime."}

    def to_internal_value(self, data: Any) -> datetime:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            return parse_datetime(data)
        except ValueError:
            self.fail("invalid")

    def to_representation(self, value: datetime) -> datetime:  # pragma: no cover - input only
        return value


class RunInputField(StrictCharField):
    """A run's input string; the object older clients send is taken as unencrypted input, i.e. base64
    of its JSON (what the node reads), and then checked like any other input."""

    also_takes = serializers.DictField()  # for the document

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, dict):
            data = base64.b64encode(json.dumps(data).encode()).decode()
        return super().to_internal_value(data)


class OrganizationInput(serializers.Serializer):
    id = IdField()
    input = RunInputField(allow_blank=True)


STEP_FUNCTION = "function"  # the key every preprocessing step has


@extend_schema_field({"type": "object", "additionalProperties": {}, "required": [STEP_FUNCTION]})
class PreprocessingStep(serializers.DictField):
    def to_internal_value(self, data: Any) -> dict:
        value = super().to_internal_value(data)
        if STEP_FUNCTION not in value:
            raise serializers.ValidationError("Each preprocessing step needs a 'function'.")
        return value


class DatabaseInput(StrictSerializer):
    label = StrictCharField(min_length=1, max_length=256)  # type: ignore[assignment]  # a field named label
    query = StrictCharField(required=False, allow_blank=True)
    sheet_name = StrictCharField(required=False, allow_blank=True)
    preprocessing = serializers.ListField(child=PreprocessingStep(), required=False)
    arguments = serializers.DictField(required=False)


class DatabasesField(serializers.ListField):
    """A list of database entries, or a single label."""

    also_takes = DatabaseInput._declared_fields["label"]  # for the document

    def __init__(self, **kwargs) -> None:
        super().__init__(child=DatabaseInput(), **kwargs)

    def to_internal_value(self, data: Any) -> list[dict]:
        if isinstance(data, str):
            data = [{"label": data}]
        return super().to_internal_value(data)


class TaskInput(serializers.Serializer):
    name = StrictCharField(
        max_length=128, required=False, allow_blank=True, validators=[not_a_number("Must not be a number.")]
    )
    description = StrictCharField(max_length=1024, required=False, allow_blank=True)
    image = StrictCharField(min_length=1, max_length=512)
    collaboration_id = IdField(required=False, allow_null=True)
    study_id = IdField(required=False, allow_null=True)
    store_id = IdField(required=False, allow_null=True)
    server_url = StrictCharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        validators=[TextPattern(HTTP_URL, "Enter an http(s) URL.")],
    )
    organizations = serializers.ListField(
        child=OrganizationInput(),
        min_length=1,
        validators=[UniqueItems("An organization is listed twice.", key="id")],
    )
    databases = DatabasesField(required=False, allow_null=True)

    class Meta:
        validators = [
            AnyKeyRequired(
                ("collaboration_id", "study_id"), "Either a collaboration_id or a study_id is required."
            )
        ]


def database_parameters(entry: dict) -> str:
    """The compact JSON of a database entry without its label, as stored in TaskDatabase."""
    return json.dumps({k: v for k, v in entry.items() if k != "label"}, separators=(",", ":"))


class RunPatchInput(StrictSerializer):
    started_at = IsoDateTimeField(required=False, allow_null=True)
    finished_at = IsoDateTimeField(required=False, allow_null=True)
    log = StrictCharField(required=False, allow_null=True, allow_blank=True)
    result = StrictCharField(required=False, allow_null=True, allow_blank=True)
    status = serializers.ChoiceField(choices=TaskStatus.values, required=False)


class ContainerTokenInput(serializers.Serializer):
    task_id = IdField()
    image = StrictCharField(min_length=1)


class PortInput(serializers.Serializer):
    port = serializers.IntegerField(min_value=1, max_value=65535)
    run_id = IdField()
    label = StrictCharField(max_length=128, required=False, allow_null=True, allow_blank=True)  # type: ignore[assignment]


@extend_schema_serializer(component_name="Kill")
class IdInput(serializers.Serializer):
    id = IdField()


class ColumnOrganizationInput(OrganizationInput):
    """Shared column names need only the ids; the task that asks the nodes needs the inputs too."""

    input = RunInputField(allow_blank=True, required=False)


class ColumnInput(serializers.Serializer):
    db_label = StrictCharField(min_length=1, max_length=256)
    collaboration_id = IdField()
    organizations = serializers.ListField(child=ColumnOrganizationInput(), min_length=1)
    sheet_name = StrictCharField(required=False, allow_blank=True)
    query = StrictCharField(required=False, allow_blank=True)
