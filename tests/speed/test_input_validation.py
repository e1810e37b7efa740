"""Request bodies are validated with the fields of their serializer built once per thread (DRF
deep-copies them for every serializer), with DRF's results: the same data and the same errors,
whatever was validated before and in whichever thread."""

from __future__ import annotations

import copy
import threading
from unittest import mock

import pytest
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from tasks.serializers import PortInput, RunPatchInput, TaskInput
from vantage6.api.serializers import validated

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
    """What DRF itself gives for the body: its validated data or its errors."""
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
