"""Output and input serializers of nodes and of node login."""

from __future__ import annotations

import json
import uuid
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from nodes.models import Node
from vantage6.api.fields import IdField, RefField, TimestampField
from vantage6.api.serializers import OutputSerializer
from vantage6.api.validators import UUID, TextPattern


class NodeSimpleOutput(OutputSerializer):
    last_seen = TimestampField(read_only=True)
    organization = RefField("organization")

    class Meta:
        model = Node
        fields = ["id", "ip", "last_seen", "status", "name", "organization"]


_NOT_LOADED = object()


class NodeOutput(NodeSimpleOutput):
    """A node with the configuration it shares (``config_rows`` of ``selectors._nodes``)."""

    type = serializers.CharField(read_only=True)
    collaboration = RefField("collaboration")
    config = serializers.SerializerMethodField()

    class Meta:
        model = Node
        fields = [
            "id",
            "type",
            "ip",
            "last_seen",
            "status",
            "name",
            "organization",
            "collaboration",
            "config",
        ]

    @extend_schema_field(
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"key": {"type": "string"}, "value": {"type": "string"}},
                "required": ["key", "value"],
            },
        }
    )
    def get_config(self, node: Node) -> list[dict]:
        rows: Any = getattr(node, "config_rows", _NOT_LOADED)
        if rows is _NOT_LOADED:  # a node not loaded by the selectors
            return [{"key": row.key, "value": row.value} for row in node.config.all()]
        return [{"key": key, "value": value} for _id, key, value in sorted(json.loads(rows or "[]"))]


class NodeCreatedOutput(NodeOutput):
    """The answer to creating a node: the only time its API key is shown."""

    api_key = serializers.SerializerMethodField()

    class Meta(NodeOutput.Meta):
        fields = [*NodeOutput.Meta.fields, "api_key"]

    def get_api_key(self, node: Node) -> str:
        return self.context["api_key"]


class NodeCreateInput(serializers.Serializer):
    collaboration_id = IdField()
    organization_id = IdField(required=False, allow_null=True)
    name = serializers.CharField(max_length=128, required=False, allow_null=True, allow_blank=True)
    # Accepted for compatibility; a node reports its address itself.
    ip = serializers.IPAddressField(required=False, allow_null=True, allow_blank=True)


class NodeUpdateInput(serializers.Serializer):
    name = serializers.CharField(max_length=128, required=False)
    ip = serializers.IPAddressField(required=False, allow_null=True, allow_blank=True)
    clear_ip = serializers.BooleanField(required=False)

    def validate(self, attrs: dict) -> dict:
        moved = sorted({"organization_id", "collaboration_id"} & set(self.initial_data))
        if moved:
            raise serializers.ValidationError(
                {key: ["A node cannot be moved to another organization or collaboration."] for key in moved}
            )
        return attrs


class NodeLoginInput(serializers.Serializer):
    api_key = serializers.CharField(max_length=64, validators=[TextPattern(UUID, "Not a valid UUID.")])

    def validate_api_key(self, value: str) -> uuid.UUID:
        return uuid.UUID(value)


class NodeRecoverInput(serializers.Serializer):
    id = IdField()


class NodeTokenValidOutput(serializers.Serializer):
    msg = serializers.CharField()
    node_id = serializers.IntegerField()
    name = serializers.CharField()
    organization_id = serializers.IntegerField()


class ApiKeyOutput(serializers.Serializer):
    api_key = serializers.CharField()
