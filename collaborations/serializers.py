"""Output and input serializers of organizations, collaborations, studies and algorithm stores."""

from __future__ import annotations

import base64
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from collaborations.models import AlgorithmStore, Collaboration, Organization, Study
from vantage6.api.fields import IdField, ListLinkField, RefField, id_list
from vantage6.api.references import list_link
from vantage6.api.schema import Embeddable
from vantage6.api.serializers import OutputSerializer
from vantage6.api.validators import HTTP_URL, TextPattern, UniqueItems, not_a_number

_unique_ids = UniqueItems("The ids must be unique.")
_proper_name = not_a_number("Name cannot be a number.")
# Base64 with its padding, as ``base64.b64decode`` decodes it.
_BASE64 = r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


class IdInput(serializers.Serializer):
    """``{"id": <int>}``: the body of the add/remove member endpoints."""

    id = IdField()


# --- organizations -----------------------------------------------------------------------------------
class OrganizationOutput(OutputSerializer):
    public_key = serializers.CharField(read_only=True)
    collaborations = ListLinkField("collaboration", "organization_id")
    nodes = ListLinkField("node", "organization_id")
    users = ListLinkField("user", "organization_id")
    tasks = ListLinkField("task", "init_org_id")
    runs = ListLinkField("run", "organization_id")
    studies = ListLinkField("study", "organization_id")

    class Meta:
        model = Organization
        fields = [
            "id", "name", "domain", "address1", "address2", "zipcode", "country", "public_key",
            "collaborations", "nodes", "users", "tasks", "runs", "studies",
        ]  # fmt: skip


def _text(**kwargs) -> serializers.CharField:
    return serializers.CharField(max_length=128, allow_blank=True, allow_null=True, required=False, **kwargs)


class OrganizationCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=128, validators=[_proper_name])
    domain = _text()
    address1 = _text()
    address2 = _text()
    zipcode = _text()
    country = _text()
    # base64 of the PEM; stored as the decoded bytes.
    public_key = serializers.CharField(
        allow_blank=True, allow_null=True, required=False, trim_whitespace=True,
        validators=[TextPattern(_BASE64, "The public key must be base64 encoded.")],
    )  # fmt: skip

    def validate_public_key(self, value: str | None) -> bytes | None:
        if not value:
            return None if value is None else b""
        return base64.b64decode(value, validate=True)

    def validate(self, attrs: dict) -> dict:
        # Fields sent as null are left alone.
        return {key: value for key, value in attrs.items() if value is not None}


class OrganizationUpdateInput(OrganizationCreateInput):
    name = serializers.CharField(max_length=128, allow_null=True, required=False, validators=[_proper_name])


# --- collaborations ----------------------------------------------------------------------------------
class CollaborationOutput(OutputSerializer):
    """``include_organizations`` in the context embeds the member organizations (prefetched)."""

    organizations = serializers.SerializerMethodField()
    nodes = ListLinkField("node", "collaboration_id")
    tasks = ListLinkField("task", "collaboration_id")
    algorithm_stores = ListLinkField("algorithmstore", "collaboration_id")
    studies = ListLinkField("study", "collaboration_id")

    class Meta:
        model = Collaboration
        fields = ["id", "name", "encrypted", "organizations", "nodes", "tasks", "algorithm_stores", "studies"]

    @extend_schema_field(Embeddable(OrganizationOutput, many=True))
    def get_organizations(self, collaboration: Collaboration) -> str | list[dict]:
        if self.context.get("include_organizations"):
            return OrganizationOutput.represent(collaboration.organizations.all())
        return list_link("organization", collaboration_id=collaboration.pk)


class CollaborationCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=128, validators=[_proper_name])
    organization_ids = id_list(allow_empty=False, validators=[_unique_ids])
    encrypted = serializers.BooleanField()


class CollaborationUpdateInput(serializers.Serializer):
    name = serializers.CharField(max_length=128, required=False, validators=[_proper_name])
    organization_ids = id_list(allow_empty=False, required=False, validators=[_unique_ids])
    encrypted = serializers.BooleanField(required=False)


# --- studies -----------------------------------------------------------------------------------------
class StudyOutput(OutputSerializer):
    """``include_organizations`` in the context embeds the member organizations (prefetched)."""

    collaboration = RefField("collaboration")
    organizations = serializers.SerializerMethodField()
    tasks = ListLinkField("task", "study_id")

    class Meta:
        model = Study
        fields = ["id", "name", "collaboration", "organizations", "tasks"]

    @extend_schema_field(Embeddable(OrganizationOutput, many=True))
    def get_organizations(self, study: Study) -> str | list[dict]:
        if self.context.get("include_organizations"):
            return OrganizationOutput.represent(study.organizations.all())
        return list_link("organization", study_id=study.pk)


class StudyCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=128, validators=[_proper_name])
    collaboration_id = IdField()
    organization_ids = id_list(allow_empty=False, validators=[_unique_ids])


class StudyUpdateInput(serializers.Serializer):
    name = serializers.CharField(max_length=128, required=False, validators=[_proper_name])
    organization_ids = id_list(allow_empty=False, required=False, validators=[_unique_ids])
    # A study cannot move to another collaboration; the key is accepted and ignored.
    collaboration_id = serializers.JSONField(required=False, write_only=True)


# --- algorithm stores --------------------------------------------------------------------------------
class AlgorithmStoreOutput(OutputSerializer):
    collaborations = serializers.SerializerMethodField()

    class Meta:
        model = AlgorithmStore
        fields = ["id", "name", "url", "collaborations"]

    def get_collaborations(self, store: AlgorithmStore) -> str | None:
        # null: the store is available to every collaboration.
        if store.collaboration_id is None:
            return None
        return list_link("collaboration", algorithm_store_id=store.pk)


class _CollaborationIdField(IdField):
    """A collaboration id; the official client sends it as a one-element list."""

    also_takes = id_list(min_length=1, max_length=1)  # for the document

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, list) and len(data) == 1:
            data = data[0]
        return super().to_internal_value(data)


class _HttpUrlField(serializers.URLField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators.append(TextPattern(HTTP_URL, "Only http and https URLs are supported."))


class AlgorithmStoreCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=128, validators=[_proper_name])
    algorithm_store_url = _HttpUrlField(max_length=500)
    server_url = _HttpUrlField(max_length=500, required=False, allow_null=True)
    collaboration_id = _CollaborationIdField(required=False, allow_null=True)
    force = serializers.BooleanField(required=False, default=False)


class AlgorithmStoreUpdateInput(serializers.Serializer):
    name = serializers.CharField(max_length=128, required=False, validators=[_proper_name])
    collaboration_id = _CollaborationIdField(required=False, allow_null=True)

    def validate(self, attrs: dict) -> dict:
        if {"url", "algorithm_store_url"} & set(self.initial_data):
            raise serializers.ValidationError({"url": ["The URL of an algorithm store cannot be changed."]})
        return attrs
