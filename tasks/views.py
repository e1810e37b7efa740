"""Endpoints of tasks, runs, results, ports, kills, container tokens, VPN, columns and large results."""

from __future__ import annotations

from functools import partial

from django.db.models import Expression, QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import ANY_CLIENT, CONTAINER, NODE, USER, ApiViewSet
from accounts.permissions import fetch_in_collaboration, fetch_named, get_for
from collaborations.models import Collaboration
from nodes.models import Node
from tasks import blobs, selectors, services
from tasks.models import RUN_LARGE_FIELDS, Run, Task
from tasks.serializers import (
    ColumnInput,
    ContainerTokenInput,
    IdInput,
    PortInput,
    PortOutput,
    ResultOutput,
    RunOutput,
    RunPatchInput,
    TaskInput,
    TaskOutput,
)
from vantage6.api.errors import ApiError, bad_request, not_found
from vantage6.api.lists import ListAction
from vantage6.api.pagination import LargeRows
from vantage6.api.params import Filters, int_param
from vantage6.api.schema import MessageOutput, include
from vantage6.api.serializers import validated
from vantage6.db.sizes import bytes_of

NEWEST_FIRST = ("-id",)
RUN_FILTERS = Filters(
    task_id="id", organization_id="id", node_id="id", collaboration_id="id", state="text",
    assigned_from="time", assigned_till="time", started_from="time", started_till="time",
    finished_from="time", finished_till="time", port="int",
)  # fmt: skip
TASK_FILTERS = Filters(
    collaboration_id="id", init_org_id="id", init_user_id="id", study_id="id", parent_id="id",
    job_id="id", name="like", image="like", description="like", database="text",
    is_user_created="int", store_id="id", run_id="id", status="text",
)  # fmt: skip
ADDRESS_FILTERS = Filters(
    include_children="flag", include_parent="flag", only_children="flag", only_parent="flag",
    only_siblings="flag", only_self="flag", label="text",
)  # fmt: skip
NOT_CONFIGURED = OpenApiResponse(description="Not configured on this server")


def _created(task: Task) -> Response:
    """The task just created, as it was written (its databases included: no read back)."""
    return Response(TaskOutput(task).data, status=201)


class TaskViewSet(ListAction, ApiViewSet):
    queryset = Task.objects.all()
    serializer_class = TaskOutput
    clients = ANY_CLIENT
    action_clients = {"create": (USER, CONTAINER), "destroy": (USER,), "status": (USER, CONTAINER)}

    FILTERS = TASK_FILTERS
    INCLUDES = ("runs", "results")
    default_order = NEWEST_FIRST

    def rows(self, filters: dict, include: set[str]) -> QuerySet:
        return selectors.task_list(self.principal, filters, include)

    def row_bytes(self, include: set[str]) -> Expression | None:
        return selectors.task_bytes(include)

    def large_rows(self, include: set[str]) -> LargeRows | None:
        return partial(selectors.tasks_with_large_runs, include)

    def output(self, rows: list, include: set[str]) -> list:
        selectors.attach_task_details(rows, include)
        return TaskOutput.represent(rows, {"include": include})

    @extend_schema(request=TaskInput, responses={201: TaskOutput, 403: None})
    def create(self, request: Request) -> Response:
        data = validated(TaskInput, request.data)
        task = services.task_create(
            principal=self.principal, data=data, authorization=request.META.get("HTTP_AUTHORIZATION")
        )
        return _created(task)

    @extend_schema(parameters=[include("runs", "results")])
    def retrieve(self, request: Request, pk: str) -> Response:
        include = self.includes(request)
        task = selectors.task_for_view(self.principal, pk, include)
        return Response(TaskOutput(task, context={"include": include}).data)

    def destroy(self, request: Request, pk: str) -> Response:
        task = get_for(self.principal, Task.objects.all(), pk, "delete", missing=f"Task id={pk} not found!")
        services.task_delete(principal=self.principal, task=task)
        return Response({"msg": f"task id={pk} and its algorithm run data have been successfully deleted"})

    @extend_schema(responses=inline_serializer("TaskStatus", {"status": serializers.CharField()}))
    def status(self, request: Request, pk: str) -> Response:
        task = get_for(self.principal, Task.objects.all(), pk, missing=f"Task id={pk} not found!")
        return Response({"status": task.status})


class RunViewSet(ListAction, ApiViewSet):
    queryset = Run.objects.all()
    serializer_class = RunOutput
    clients = ANY_CLIENT
    action_clients = {"partial_update": (NODE,)}
    deferred_actions = frozenset({"partial_update"})

    FILTERS = RUN_FILTERS
    INCLUDES = ("task",)
    default_order = NEWEST_FIRST

    def rows(self, filters: dict, include: set[str]) -> QuerySet:
        return selectors.run_list(self.principal, filters, with_task=True, embed_task="task" in include)

    def row_bytes(self, include: set[str]) -> Expression | None:
        return bytes_of(*RUN_LARGE_FIELDS)

    def output(self, rows: list, include: set[str]) -> list:
        selectors.attach_run_details(rows, "task" in include)
        return RunOutput.represent(rows, {"include_task": "task" in include})

    @extend_schema(parameters=[include("task")])
    def retrieve(self, request: Request, pk: str) -> Response:
        include_task = "task" in self.includes(request)
        run = selectors.run_for_view(self.principal, pk, include_task)
        return Response(RunOutput(run, context={"include_task": include_task}).data)

    @extend_schema(request=RunPatchInput)
    def partial_update(self, request: Request, pk: str) -> Response:
        data = validated(RunPatchInput, request.data)
        run = services.run_update(principal=self.deferred_caller, run_id=int(pk), data=data)
        # The updated run, its task, its ports and its node (the caller) are at hand.
        run.node_info = selectors.node_info(self.principal.node)  # type: ignore[attr-defined]  # read by RunOutput
        return Response(RunOutput.one(run))


class ResultViewSet(ListAction, ApiViewSet):
    queryset = Run.objects.all()
    serializer_class = ResultOutput
    clients = ANY_CLIENT

    FILTERS = RUN_FILTERS
    default_order = NEWEST_FIRST

    def rows(self, filters: dict, include: set[str]) -> QuerySet:
        return selectors.run_list(self.principal, filters)

    def row_bytes(self, include: set[str]) -> Expression | None:
        return bytes_of("result")

    def retrieve(self, request: Request, pk: str) -> Response:
        run = get_for(
            self.principal, Run.objects.select_related("task"), pk, None, missing=f"Result id={pk} not found!"
        )
        self.principal.require(self.principal.allows("task_runs", run.task))
        return Response(ResultOutput(run).data)


class PortViewSet(ApiViewSet):
    clients = (NODE,)
    deferred_actions = frozenset({"create"})

    @extend_schema(request=PortInput, responses={201: PortOutput})
    def create(self, request: Request) -> Response:
        data = validated(PortInput, request.data)
        port = services.port_create(
            principal=self.deferred_caller, run_id=data["run_id"], port=data["port"], label=data.get("label")
        )
        return Response(PortOutput.one(port), status=201)

    @extend_schema(
        parameters=[OpenApiParameter("run_id", int, required=True, description="The run whose ports go.")],
        responses={200: MessageOutput, 400: None},
    )
    def delete_of_run(self, request: Request) -> Response:
        run_id = int_param(request, "run_id")
        if run_id is None:
            raise bad_request("The query parameter run_id is required")
        services.ports_delete(principal=self.principal, run_id=run_id)
        return Response({"msg": "Ports removed from the database."})


class KillViewSet(ApiViewSet):
    clients = (USER,)
    deferred_actions = frozenset({"task"})

    @extend_schema(request=IdInput, responses=MessageOutput)
    def task(self, request: Request) -> Response:
        task_id = validated(IdInput, request.data)["id"]
        services.task_kill(principal=self.deferred_caller, task_id=task_id)
        return Response({"msg": f"Nodes have been instructed to kill the runs of task id={task_id}."})

    @extend_schema(request=IdInput, responses=MessageOutput)
    def node_tasks(self, request: Request) -> Response:
        node_id = validated(IdInput, request.data)["id"]

        def reached(node: Node) -> bool:
            return self.principal.reaches(
                "event", "send", organization_id=node.organization_id, collaboration_id=node.collaboration_id
            )

        missing = f"Node id={node_id} not found!"
        node = fetch_named(self.principal, Node.objects.all(), node_id, missing=missing, reach=reached)
        self.principal.require(reached(node))
        services.node_kill(principal=self.principal, node=node)
        return Response({"msg": f"Node id={node_id} has been instructed to kill all its algorithm runs."})


class ContainerTokenViewSet(ApiViewSet):
    clients = (NODE,)

    @extend_schema(
        request=ContainerTokenInput,
        responses={200: inline_serializer("ContainerToken", {"container_token": serializers.CharField()})},
    )
    def create(self, request: Request) -> Response:
        data = validated(ContainerTokenInput, request.data)
        token = services.container_token_issue(
            principal=self.principal, task_id=data["task_id"], image=data["image"]
        )
        return Response({"container_token": token})


VPN_NOT_CONFIGURED = "This server has no VPN server configured, so algorithms cannot communicate over VPN."


class VpnViewSet(ApiViewSet):
    clients = (NODE,)
    action_clients = {"addresses": (CONTAINER,)}

    @extend_schema(responses={501: NOT_CONFIGURED})
    def config(self, request: Request) -> Response:
        raise ApiError(501, VPN_NOT_CONFIGURED)

    @extend_schema(request=None, responses={501: NOT_CONFIGURED})
    def update_config(self, request: Request) -> Response:
        raise ApiError(501, VPN_NOT_CONFIGURED)

    @extend_schema(
        parameters=ADDRESS_FILTERS.parameters,
        responses={
            200: inline_serializer(
                "AlgorithmAddresses",
                {
                    "addresses": inline_serializer(
                        "AlgorithmAddress",
                        {
                            "port": serializers.IntegerField(),
                            "label": serializers.CharField(allow_null=True),
                            "ip": serializers.CharField(allow_null=True),
                            "organization_id": serializers.IntegerField(),
                            "task_id": serializers.IntegerField(),
                            "parent_id": serializers.IntegerField(allow_null=True),
                        },
                        many=True,
                    )
                },
            ),
            400: None,
        },
    )
    def addresses(self, request: Request) -> Response:
        filters = ADDRESS_FILTERS.parse(request)
        return Response({"addresses": selectors.algorithm_addresses(self.principal, filters)})


COLUMN_TASK_IMAGE = "ghcr.io/vantage6/algorithm-basics:latest"


class ColumnViewSet(ApiViewSet):
    clients = (USER,)

    @extend_schema(
        request=ColumnInput,
        responses={
            200: inline_serializer(
                "Columns", {"columns": serializers.ListField(child=serializers.CharField())}
            ),
            201: OpenApiResponse(TaskOutput, description="No node shares the columns: a task asks them."),
        },
    )
    def create(self, request: Request) -> Response:
        data = validated(ColumnInput, request.data)
        collaboration_id = data["collaboration_id"]
        collaboration = fetch_in_collaboration(
            self.principal,
            Collaboration.objects.all(),
            collaboration_id,
            resource="task",
            operation="create",
            missing=f"Collaboration id={collaboration_id} not found!",
        )
        self.principal.require(self.principal.reaches("task", "create", collaboration_id=collaboration.pk))
        columns = selectors.column_names(collaboration.pk, data["db_label"])
        if columns is not None:
            return Response({"columns": columns})
        database = {"label": data["db_label"]}
        database.update({key: data[key] for key in ("sheet_name", "query") if key in data})
        body = {
            "name": "get_column_names",
            "image": COLUMN_TASK_IMAGE,
            "collaboration_id": collaboration.pk,
            "organizations": data["organizations"],
            "databases": [database],
        }
        task = services.task_create(principal=self.principal, data=validated(TaskInput, body))
        return _created(task)


class BlobViewSet(ApiViewSet):
    clients = ANY_CLIENT

    @extend_schema(
        responses=inline_serializer("BlobStoreStatus", {"blob_store_enabled": serializers.BooleanField()})
    )
    def status(self, request: Request) -> Response:
        return Response({"blob_store_enabled": blobs.blob_storage() is not None})

    @extend_schema(
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={
            201: inline_serializer("BlobUploaded", {"uuid": serializers.CharField()}),
            403: None,
            501: NOT_CONFIGURED,
        },
    )
    def upload(self, request: Request) -> Response:
        principal = self.principal
        # A container's token is refused once its run or task ended (``principal_from_claims``).
        if principal.is_user:
            principal.require(principal.at_least("col", "task", "create"))
        # The raw body is read in chunks, never as a whole.
        name = services.blob_upload(principal=principal, read=request._request.read)
        return Response({"uuid": name}, status=201)

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 501: NOT_CONFIGURED})
    def download(self, request: Request, uuid: str) -> StreamingHttpResponse:
        storage = blobs.blob_storage()
        if storage is None:
            raise ApiError(501, "This server has no large result store configured")
        naming = selectors.blob_readers(self.principal, [uuid])[uuid] if blobs.is_blob_id(uuid) else None
        if naming is None or not naming.exists or not storage.exists(uuid):
            raise not_found(f"Blob {uuid} not found!")
        self.principal.require(self.principal.reads_blob(*naming))
        response = StreamingHttpResponse(blobs.stream(storage, uuid), content_type="application/octet-stream")
        response["Content-Disposition"] = f"attachment; filename=result_{uuid}.bin"
        return response
