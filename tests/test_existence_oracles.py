"""Ids that name what the caller may not see answer as ids that name nothing: a write body or a list
filter naming an object of C (out of everyone's reach in A) gets the same status and message as one
naming an object that does not exist, so that guessing ids tells nothing about other organizations."""

from __future__ import annotations

import pytest

from accounts.models import Rule
from collaborations.models import AlgorithmStore
from tests.factories import bearer, make_user
from tests.test_attacker_sweep import _filled, _state, _task, scene  # noqa: F401 - scene: a fixture

pytestmark = pytest.mark.django_db

MISSING = 2_000_000  # an id of no row
CALLERS = ("researcher", "org admin", "collaboration admin", "node", "container")
# Callers tried on some list filters only: the rows they list show the other ids anyway.
FILTER_CALLERS = {"role_id": ("user viewer",)}

# (method, path, body, the hidden object ``{x}`` stands for): A's own objects elsewhere.
WRITES = [
    ("post", "user", {"username": "u", "email": "u@example.org", "password": "Pass-word-123!",
                      "organization_id": "{x}"}, "org_c"),
    ("post", "user", {"username": "u", "email": "u@example.org", "password": "Pass-word-123!",
                      "roles": ["{x}"]}, "role_c"),
    ("patch", "user/{user_a}", {"organization_id": "{x}"}, "org_c"),
    ("patch", "user/{user_a}", {"roles": ["{x}"]}, "role_c"),
    ("post", "role", {"name": "r", "rules": [], "organization_id": "{x}"}, "org_c"),
    ("post", "collaboration", {"name": "c", "organization_ids": ["{org_a}", "{x}"], "encrypted": False},
     "org_c"),
    ("patch", "collaboration/{collab_ab}", {"organization_ids": ["{org_a}", "{org_b}", "{x}"]}, "org_c"),
    ("post", "collaboration/{collab_ab}/organization", {"id": "{x}"}, "org_c"),
    ("delete", "collaboration/{collab_ab}/organization", {"id": "{x}"}, "org_c"),
    ("post", "collaboration/{collab_ab}/node", {"id": "{x}"}, "node_c"),
    ("delete", "collaboration/{collab_ab}/node", {"id": "{x}"}, "node_c"),
    ("post", "node", {"collaboration_id": "{x}", "organization_id": "{org_a}"}, "collab_c2"),
    ("post", "node", {"collaboration_id": "{collab_ab}", "organization_id": "{x}"}, "org_c"),
    ("post", "task", _task("x", "org_a"), "collab_c"),
    ("post", "task", _task("collab_ab", "x"), "org_c"),
    ("post", "task", _task("collab_ab", "org_a", study_id="{x}"), "study_c"),
    # (an algorithm container's subtask takes the store of its parent, whatever it names)
    ("post", "task", _task("collab_ab", "org_a", store_id="{x}"), "store_c", ("container",)),
    ("post", "column", {"db_label": "default", "collaboration_id": "{x}",
                        "organizations": [{"id": "{org_a}"}]}, "collab_c"),
    ("post", "kill/task", {"id": "{x}"}, "task_c"),
    ("post", "kill/node/tasks", {"id": "{x}"}, "node_c"),
    ("post", "port", {"run_id": "{x}", "port": 8888}, "run_c"),
    ("delete", "port?run_id={x}", None, "run_c"),
    ("post", "token/container", {"task_id": "{x}", "image": "some/image"}, "task_c"),
    ("post", "recover/node", {"id": "{x}"}, "node_c"),
    ("post", "study", {"name": "s", "collaboration_id": "{x}", "organization_ids": ["{org_a}"]}, "collab_c"),
    ("post", "study", {"name": "s", "collaboration_id": "{collab_ab}", "organization_ids": ["{x}"]}, "org_c"),
    ("post", "algorithmstore", {"name": "s", "algorithm_store_url": "https://store.example.org",
                                "collaboration_id": "{x}"}, "collab_c"),
]  # fmt: skip


@pytest.fixture
def hidden_scene(scene, world):  # noqa: F811 - the attacker sweep's scene
    """The attacker sweep's scene, with an algorithm store of C, and a caller of A who sees every user
    (but no role of another organization)."""
    ids, callers = scene
    global_view = Rule.objects.filter(scope="GLOBAL", operation="VIEW")
    callers = {
        **callers,
        "user viewer": bearer(make_user(world.org_a, rules=global_view.filter(name="user"))),
    }
    store = AlgorithmStore.objects.create(
        name="zzc-store", url="https://store.example.org/api", collaboration=world.collab_c
    )
    return {**ids, "store_c": store.pk}, callers


# The detail page of each kind of hidden object: a caller who reads it there learns nothing.
DETAIL = {
    "org_c": "organization", "role_c": "role", "node_c": "node", "collab_c": "collaboration",
    "collab_c2": "collaboration", "user_c": "user", "study_c": "study", "task_c": "task", "run_c": "run",
    "job_c": ("task", "task_c"), "store_c": "algorithmstore",
    "role_b": "role",
}  # fmt: skip


def _answer(api, method: str, path: str, body: object, ids: dict, headers: dict) -> tuple[int, str]:
    response = getattr(api, method)(
        f"/api/{path.format(**ids)}", _filled(body, ids), format="json", **headers
    )
    return response.status_code, response.content.decode()


def _sees(api, ids: dict, callers: dict, hidden: str, caller: str) -> bool:
    """Whether ``caller`` reads the hidden object on its detail page."""
    resource, key = DETAIL[hidden] if isinstance(DETAIL[hidden], tuple) else (DETAIL[hidden], hidden)
    return api.get(f"/api/{resource}/{ids[key]}", **callers[caller]).status_code == 200


def _compare(
    api,
    ids: dict,
    callers: dict,
    hidden: str,
    send,
    skip: tuple[str, ...] = (),
    also: tuple[str, ...] = (),
    seen: dict[tuple[str, str], bool] | None = None,
) -> dict:
    """Per caller (of ``CALLERS`` and ``also``) that may not read the hidden object: its answers
    (hidden, none) where they differ by more than the id they echo. ``seen``: who reads which hidden
    object, kept across the calls of a test that writes nothing."""
    seen = {} if seen is None else seen
    differ = {}
    for caller in (caller for caller in CALLERS + also if caller not in skip):
        if (hidden, caller) not in seen:
            seen[hidden, caller] = _sees(api, ids, callers, hidden, caller)
        if seen[hidden, caller]:
            continue  # it sees the object anyway
        of_hidden, of_none = (send({**ids, "x": x}, callers[caller]) for x in (ids[hidden], MISSING))
        if of_hidden != (of_none[0], of_none[1].replace(str(MISSING), str(ids[hidden]))):
            differ[caller] = (of_hidden, of_none)
    return differ


@pytest.mark.parametrize(("method", "path", "body", "hidden", "skip"), [(*w, ())[:5] for w in WRITES])
def test_a_write_naming_a_hidden_object_answers_as_for_none(
    api, hidden_scene, method, path, body, hidden, skip
):
    ids, callers = hidden_scene
    before = _state()

    send = lambda ids, caller: _answer(api, method, path, body, ids, caller)  # noqa: E731
    differ = _compare(api, ids, callers, hidden, send, skip)

    assert not differ
    assert _state() == before


LISTS = ("user", "organization", "collaboration", "node", "task", "run", "result", "role", "rule", "study",
         "algorithmstore", "audit")  # fmt: skip
# Each id filter, and the hidden objects it names: of C, and a role of partner B (the users, tasks and
# runs of B are named by the rows their partners of A list anyway).
FILTERS = {
    "organization_id": ("org_c",), "collaboration_id": ("collab_c",), "user_id": ("user_c",),
    "role_id": ("role_c", "role_b"), "task_id": ("task_c",), "node_id": ("node_c",),
    "study_id": ("study_c",), "init_org_id": ("org_c",), "init_user_id": ("user_c",),
    "parent_id": ("task_c",), "run_id": ("run_c",), "job_id": ("job_c",),
    "object_id": ("user_c",), "actor_id": ("user_c",), "object_organization_id": ("org_c",),
    "actor_organization_id": ("org_c",),
}  # fmt: skip


@pytest.mark.parametrize("name", LISTS)
def test_a_list_filter_naming_a_hidden_object_answers_as_for_none(api, hidden_scene, name):
    ids, callers = hidden_scene
    seen: dict[tuple[str, str], bool] = {}  # lists are only read: asked once per caller, not per filter
    differ = {}
    for parameter, hidden_objects in FILTERS.items():

        def send(ids: dict, caller: dict, parameter: str = parameter) -> tuple[int, str]:
            response = api.get(f"/api/{name}?{parameter}={ids['x']}", **caller)
            return response.status_code, response.content.decode()

        for hidden in hidden_objects:
            also = FILTER_CALLERS.get(parameter, ())
            if found := _compare(api, ids, callers, hidden, send, also=also, seen=seen):
                differ[parameter, hidden] = found
    assert not differ


# Detail routes: (method, path, the hidden object ``{x}`` stands for).
DETAILS = [
    (method, f"{resource}/{{x}}", hidden)
    for resource, hidden in (
        ("organization", "org_c"), ("role", "role_c"), ("user", "user_c"), ("node", "node_c"),
        ("collaboration", "collab_c"), ("study", "study_c"), ("task", "task_c"), ("run", "run_c"),
        ("result", "run_c"),
    )
    for method in ("get", "patch", "delete")
    if (resource, method) not in (("task", "patch"), ("result", "patch"), ("run", "delete"))
] + [("post", "role/{x}/rule/{rule}", "role_c"), ("delete", "role/{x}/rule/{rule}", "role_c")]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "hidden"), DETAILS)
def test_a_detail_route_of_a_hidden_object_answers_as_for_none(api, hidden_scene, method, path, hidden):
    ids, callers = hidden_scene
    before = _state()

    send = lambda ids, caller: _answer(api, method, path, {}, ids, caller)  # noqa: E731
    differ = _compare(api, ids, callers, hidden, send)

    assert not differ
    assert _state() == before
