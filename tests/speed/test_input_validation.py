"""Request bodies are validated with the fields of their serializer built once per thread (DRF
deep-copies them for every serializer), with DRF's results: the same data and the same errors,
whatever was validated before and in whichever thread."""

from __future__ import annotations

import copy
import threading
from unittest import mock

import pytest
from django.http import QueryDict
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from tasks.serializers import IdInput, PortInput, RunPatchInput, TaskInput
from vantage6.api.serializers import _type_errors, validated

BODIES = [
    (PortInput, {"port": 8080, "run_id": 3, "label": "api"}),
    (PortInput, {"port": 0, "run_id": "x"}),
    (PortInput, {"run_id": 3, "label": 5}),
    (RunPatchInput, {"status": "active"}),
    (RunPatchInput, {"status": "nope", "result": "r", "extra": 1}),
    (RunPatchInput, {"started_at": "2026-01-01T00:00:00", "finished_at": "bad", "log": None}),
    (TaskInput, {"image": "i", "collaboration_id": 1, "organizations": [{"id": 1, "input": "eyJhIjogMX0="}]}),
    (TaskInput, {"image": "i", "collaboration_id": 1, "organizations": [{"id": "x"}], "databases": [{}]}),
    (TaskInput, []),
]


def drf(serializer_class: type[serializers.Serializer], data: object) -> tuple[str, object]:
    """What DRF itself gives for the body: its validated data or its errors; a value of another JSON type
    than its field's is refused before (a check of its own: ``tests/api/test_fuzz_conformance.py``)."""
    if errors := _type_errors(serializer_class().fields, data):
        return "errors", errors
    serializer = serializer_class(data=data)
    if serializer.is_valid():
        return "valid", dict(serializer.validated_data)
    return "errors", serializer.errors


def ours(serializer_class: type[serializers.Serializer], data: object) -> tuple[str, object]:
    try:
        return "valid", validated(serializer_class, data)
    except ValidationError as error:
        return "errors", error.detail


def test_the_fields_are_built_once_per_thread():
    body = {"port": 8080, "run_id": 3}
    validated(PortInput, body)
    with mock.patch("rest_framework.serializers.copy.deepcopy", wraps=copy.deepcopy) as deepcopy:
        for _ in range(3):
            validated(PortInput, body)
    assert deepcopy.call_count == 0


@pytest.mark.parametrize("rounds", [1, 2])
def test_validation_gives_what_drf_gives_in_any_order(rounds):
    # Each body after every other one: nothing of an earlier validation stays in the shared fields.
    for _ in range(rounds):
        for serializer_class, data in [*BODIES, *reversed(BODIES)]:
            assert ours(serializer_class, data) == drf(serializer_class, data)


def test_threads_validate_with_their_own_fields():
    failures: list[object] = []

    def work(offset: int) -> None:
        for i in range(200):
            serializer_class, data = BODIES[(i + offset) % len(BODIES)]
            if ours(serializer_class, data) != drf(serializer_class, data):
                failures.append((serializer_class, data))

    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# The small node bodies: what a node sends and every kind of bad body. The quick path must take the
# valid ones (``QUICK``) and give for each body exactly what DRF gives, error bodies included.
HUGE = 2**63
SMALL_BODIES = [
    *[(RunPatchInput, body) for body in [
        {}, {"status": "active"}, {"status": "completed", "result": "cmVzdWx0", "log": "done",
         "started_at": "2026-01-02T03:04:05.123456+02:00", "finished_at": "2026-01-02T03:04:05Z"},
        {"log": None, "result": None, "started_at": None, "finished_at": None},
        {"log": "", "result": ""}, {"log": "  "}, {"log": " x "}, {"log": "é ☃"}, {"log": "a\x00b"},
        {"log": "\ud800"}, {"log": "x" * 20000}, {"status": None}, {"status": ""}, {"status": "nope"},
        {"status": 1}, {"status": ["active"]}, {"log": 5}, {"log": True}, {"log": {"a": 1}}, {"log": []},
        {"result": 1.5}, {"started_at": "bad"}, {"started_at": 5}, {"started_at": "2026-01-02"},
        {"finished_at": ""}, {"extra": 1}, {"status": "active", "id": 3}, {"status": "Active"},
    ]],
    *[(PortInput, body) for body in [
        {"port": 8080, "run_id": 3}, {"port": 1, "run_id": 1, "label": "api"}, {"port": 65535, "run_id": 1,
        "label": None}, {"port": 80, "run_id": 1, "label": ""}, {"port": 80, "run_id": 1, "label": "x" * 128},
        {"port": 80, "run_id": 1, "label": "x" * 129}, {"port": 0, "run_id": 1}, {"port": 65536, "run_id": 1},
        {"port": -1, "run_id": 1}, {"port": "80", "run_id": "1"}, {"port": 80.0, "run_id": 1},
        {"port": 80.5, "run_id": 1}, {"port": True, "run_id": 1}, {"port": None, "run_id": 1},
        {"port": 80, "run_id": None}, {"port": 80}, {"run_id": 1}, {"port": 80, "run_id": 0},
        {"port": 80, "run_id": HUGE}, {"port": HUGE, "run_id": 1}, {"port": 80, "run_id": 1, "label": 7},
        {"port": 80, "run_id": 1, "extra": "x"}, {"port": [80], "run_id": 1},
        {"port": "x" * 5000, "run_id": 1},
    ]],
    *[(IdInput, body) for body in [
        {"id": 1}, {"id": 2**31 - 1}, {"id": 0}, {"id": -5}, {"id": HUGE}, {"id": "7"}, {"id": "x"},
        {"id": 7.0}, {"id": None}, {"id": True}, {"id": [1]}, {}, {"id": 1, "other": 2}, {"ID": 1},
    ]],
    *[(cls, body) for cls in (RunPatchInput, PortInput, IdInput) for body in [
        [], [{"id": 1}], "text", 5, None, True, QueryDict("id=1&port=80&run_id=1"),
    ]],
]  # fmt: skip
QUICK = [
    (RunPatchInput, {"status": "active"}),
    (RunPatchInput, {"log": None, "result": None, "started_at": None, "finished_at": None}),
    (PortInput, {"port": 8080, "run_id": 3}),
    (PortInput, {"port": 1, "run_id": 1, "label": "api"}),
    (IdInput, {"id": 1}),
]


@pytest.mark.parametrize(("serializer_class", "data"), SMALL_BODIES)
def test_a_small_body_gives_what_drf_gives(serializer_class, data):
    ours_ = ours(serializer_class, data)
    assert ours_ == drf(serializer_class, data)
    # The same types too (an id stays an int, a time a datetime).
    if ours_[0] == "valid":
        assert {k: type(v) for k, v in ours_[1].items()} == {
            k: type(v) for k, v in drf(serializer_class, data)[1].items()
        }


@pytest.mark.parametrize(("serializer_class", "data"), QUICK)
def test_a_valid_small_body_is_validated_without_a_serializer(serializer_class, data):
    expected = drf(serializer_class, data)
    refused = AssertionError("a serializer was set up")
    with mock.patch.object(serializer_class, "is_valid", side_effect=refused):
        assert ours(serializer_class, data) == expected


def test_a_body_with_nested_fields_is_validated_by_drf():
    body = {"image": "i", "collaboration_id": 1, "organizations": [{"id": 1, "input": "eyJhIjogMX0="}]}
    with mock.patch.object(TaskInput, "is_valid", autospec=True, side_effect=TaskInput.is_valid) as is_valid:
        assert ours(TaskInput, body)[0] == "valid"
    assert is_valid.call_count == 1


def _no_x(attrs: dict) -> None:
    if attrs.get("name") == "x":
        raise ValidationError("no x")


class _NotBlank(serializers.Serializer):
    name = serializers.CharField()


class _ReadOnly(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField()


class _Checked(serializers.Serializer):
    low = serializers.IntegerField()
    high = serializers.IntegerField()

    def validate(self, attrs: dict) -> dict:
        if attrs["low"] > attrs["high"]:
            raise ValidationError("low above high")
        return attrs


class _FieldChecked(serializers.Serializer):
    name = serializers.CharField()

    def validate_name(self, value: str) -> str:
        if value == "root":
            raise ValidationError("taken")
        return value


class _Together(serializers.Serializer):
    name = serializers.CharField()

    class Meta:
        validators = [_no_x]


class _Renamed(serializers.Serializer):
    name = serializers.CharField(source="title")


class _CheckedInRunValidation(serializers.CharField):
    def run_validation(self, data: object = serializers.empty) -> object:
        if data == "forbidden":
            raise ValidationError("refused by the field")
        return super().run_validation(data)


class _ReadElsewhere(serializers.IntegerField):
    def get_value(self, dictionary: dict) -> object:  # type: ignore[override]
        return dictionary.get(f"{self.field_name}_given", serializers.empty)


class _RefusedAsEmpty(serializers.IntegerField):
    def validate_empty_values(self, data: object) -> tuple[bool, object]:
        if data == 13:
            raise ValidationError("refused before conversion")
        return super().validate_empty_values(data)


class _OwnRunValidation(serializers.Serializer):
    name = _CheckedInRunValidation()


class _OwnGetValue(serializers.Serializer):
    n = _ReadElsewhere(required=False)


class _OwnEmptyValues(serializers.Serializer):
    n = _RefusedAsEmpty()


class _Defaulted(serializers.Serializer):
    n = serializers.IntegerField(default=7)


class _OwnToInternalValue(serializers.Serializer):
    name = serializers.CharField()

    def to_internal_value(self, data: object) -> dict:
        return {**super().to_internal_value(data), "added": True}


# Bodies of what the fast validation leaves to DRF (a serializer's own checks, read-only or renamed fields,
# fields whose class validates in its own way or with a default, blank text, form data): they give what
# DRF gives all the same.
BEYOND_THE_FAST_PATH = [
    (_NotBlank, {"name": "   "}),
    (_ReadOnly, {"id": 5, "name": "a"}),
    (_Checked, {"low": 2, "high": 1}),
    (_FieldChecked, {"name": "root"}),
    (_Together, {"name": "x"}),
    (_Renamed, {"name": "a"}),
    (_OwnRunValidation, {"name": "forbidden"}),
    (_OwnGetValue, {"n": 5}),
    (_OwnEmptyValues, {"n": 13}),
    (_Defaulted, {}),
    (_OwnToInternalValue, {"name": "a"}),
    (IdInput, QueryDict("id=1")),
    (PortInput, QueryDict("port=80&run_id=1&label=")),
    (RunPatchInput, QueryDict("log=&result=")),
]


@pytest.mark.parametrize(("serializer_class", "data"), BEYOND_THE_FAST_PATH)
def test_a_body_beyond_the_fast_path_gives_what_drf_gives(serializer_class, data):
    assert ours(serializer_class, data) == drf(serializer_class, data)
