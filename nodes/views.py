"""Endpoints of nodes, node login, the replacement of a node's API key and a collaboration's nodes."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import NODE, USER, ApiViewSet, ClientTypeGate, caller
from accounts.login import failures_limited
from accounts.models import AuditAction
from accounts.permissions import get_for
from accounts.serializers import NodeTokensOutput
from collaborations import selectors as collaboration_selectors
from collaborations.models import Collaboration
from collaborations.serializers import IdInput
from nodes import selectors, services
from nodes.models import Node
from nodes.serializers import (
    ApiKeyOutput,
    NodeCreatedOutput,
    NodeCreateInput,
    NodeLoginInput,
    NodeOutput,
    NodeRecoverInput,
    NodeSimpleOutput,
    NodeTokenValidOutput,
    NodeUpdateInput,
)
from vantage6.api.lists import ListAction
from vantage6.api.params import Filters
from vantage6.api.schema import MessageOutput
from vantage6.api.serializers import validated
from vantage6.api.views import ApiView


class NodeViewSet(ListAction, ApiViewSet):
    queryset = Node.objects.none()
    serializer_class = NodeOutput
    action_clients = {"list": (USER, NODE), "retrieve": (USER, NODE), "partial_update": (USER, NODE)}

    FILTERS = Filters(
        organization_id="id", collaboration_id="id", study_id="id", status="text", ip="text", name="like",
        last_seen_from="date", last_seen_till="date",
    )  # fmt: skip

    def rows(self, filters: dict, include: set[str]) -> QuerySet:
        return selectors.node_list(self.principal, filters)

    @extend_schema(request=NodeCreateInput, responses={201: NodeCreatedOutput})
    def create(self, request: Request) -> Response:
        data = validated(NodeCreateInput, request.data)
        node, api_key = services.node_create(
            principal=self.principal,
            collaboration_id=data["collaboration_id"],
            organization_id=data.get("organization_id"),
            name=data.get("name"),
        )
        return Response(NodeCreatedOutput(node, context={"api_key": api_key}).data, status=201)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(NodeOutput(selectors.node_get(self.principal, pk)).data)

    @extend_schema(request=NodeUpdateInput)
    def partial_update(self, request: Request, pk: str) -> Response:
        data = validated(NodeUpdateInput, request.data)
        node = selectors.node_get(self.principal, pk, "edit", fields=data)
        node = services.node_update(principal=self.principal, node=node, data=data)
        return Response(NodeOutput(node).data)

    def destroy(self, request: Request, pk: str) -> Response:
        node = selectors.node_get(self.principal, pk, "delete")
        services.node_delete(principal=self.principal, node=node)
        return Response({"msg": f"Successfully deleted node id={pk}"})


class NodeTokenView(ApiView):
    """Node login with its API key."""

    authentication_classes: list = []
    permission_classes: list = []
    serializer_class = NodeLoginInput

    @extend_schema(request=NodeLoginInput, responses={200: NodeTokensOutput, 401: None, 429: None})
    def post(self, request: Request) -> Response:
        api_key = validated(NodeLoginInput, request.data)["api_key"]
        with failures_limited(request.META, AuditAction.NODE_LOGIN_FAILED):
            answer = services.node_login(api_key=api_key)
        return Response(answer, headers={"jwt-token": answer["access_token"]})


class NodeTokenValidateView(ApiView):
    """Lets an algorithm store check a node's token."""

    permission_classes = [ClientTypeGate]
    clients = (NODE,)

    @extend_schema(request=None, responses=NodeTokenValidOutput)
    def post(self, request: Request) -> Response:
        node = caller(request).node
        return Response(
            {
                "msg": "Token is valid",
                "node_id": node.pk,
                "name": node.name,
                "organization_id": node.organization_id,
            }
        )


class NodeRecoverView(ApiView):
    """A new API key for a node; the old one is invalid at once."""

    permission_classes = [ClientTypeGate]
    clients = (USER,)
    serializer_class = NodeRecoverInput

    @extend_schema(request=NodeRecoverInput, responses=ApiKeyOutput)
    def post(self, request: Request) -> Response:
        node_id = validated(NodeRecoverInput, request.data)["id"]
        principal = caller(request)
        node = get_for(
            principal,
            Node.objects.all(),
            node_id,
            "edit",
            missing=f"Node with id={node_id} not found",
        )
        return Response({"api_key": services.node_api_key_reset(principal=principal, node=node)})


class CollaborationNodeViewSet(ApiViewSet):
    """``/collaboration/<id>/node``: a node joins or leaves a collaboration (the collaboration's other
    routes are those of collaborations)."""

    queryset = Collaboration.objects.none()

    @extend_schema(request=IdInput, responses={201: NodeSimpleOutput(many=True)}, methods=["POST"])
    @extend_schema(request=IdInput, responses=MessageOutput, methods=["DELETE"])
    @action(detail=True, methods=["post", "delete"], url_path="node")
    def nodes(self, request: Request, pk: str) -> Response:
        collaboration = collaboration_selectors.collaboration_for_edit(self.principal, pk)
        node_id = validated(IdInput, request.data)["id"]
        if request.method == "DELETE":
            services.collaboration_node_remove(
                principal=self.principal, collaboration=collaboration, node_id=node_id
            )
            return Response({"msg": f"Node id={node_id} removed from collaboration id={collaboration.pk}"})
        services.collaboration_node_add(
            principal=self.principal, collaboration=collaboration, node_id=node_id
        )
        nodes = Node.objects.filter(collaboration=collaboration).order_by("id")
        return Response(NodeSimpleOutput(nodes, many=True).data, status=201)
