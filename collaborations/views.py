"""Endpoints of organizations, collaborations (with their members and nodes), studies and stores."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api import ANY_CLIENT, NODE, USER, ApiViewSet
from collaborations import selectors, services
from collaborations.models import AlgorithmStore, Collaboration, Organization, Study
from collaborations.serializers import (
    AlgorithmStoreCreateInput,
    AlgorithmStoreOutput,
    AlgorithmStoreUpdateInput,
    CollaborationCreateInput,
    CollaborationOutput,
    CollaborationUpdateInput,
    IdInput,
    OrganizationCreateInput,
    OrganizationOutput,
    OrganizationUpdateInput,
    StudyCreateInput,
    StudyOutput,
    StudyUpdateInput,
)
from vantage6.api.lists import ListAction
from vantage6.api.params import Filters, first, flag
from vantage6.api.schema import DELETE_DEPENDENTS, MessageOutput, include
from vantage6.api.serializers import validated

# The algorithm store's own refusals are passed on with its status; its failures are a 502.
STORE_ERRORS = {"4XX": None, 502: None}


def _organizations(queryset) -> list[dict]:
    return cast(list, OrganizationOutput(queryset.order_by("id"), many=True).data)


class _WithMembers(ListAction, ApiViewSet):
    """Collaborations and studies: rows with organizations, shown on request (``include=``), and
    changed one at a time (``/organization``)."""

    INCLUDES = ("organizations",)

    def output_context(self, include: set[str]) -> dict:
        return {"include_organizations": "organizations" in include}

    def _output(self, row: Collaboration | Study, include_organizations: bool) -> dict:
        return self.serializer_class(row, context={"include_organizations": include_organizations}).data

    def _output_with_members(self, row: Collaboration | Study) -> dict:
        """``row`` with its members where the caller's organization rules reach them (``include=``
        would be refused otherwise), else with their link, as without ``include=``."""
        resource = str(row._meta.model_name)
        return self._output(row, self.principal.shows_embedded(resource, "organization", row))

    def _change_members(
        self, request: Request, row: Collaboration | Study, add: Callable, remove: Callable
    ) -> Response:
        """Add (POST) or remove (DELETE) the organization of the body; the members after it."""
        organization_id = validated(IdInput, request.data)["id"]
        change = add if request.method == "POST" else remove
        # The services name the row after its model: ``collaboration=`` or ``study=``.
        target = {str(row._meta.model_name): row}
        change(principal=self.principal, organization_id=organization_id, **target)
        # The members the caller's organization rules reach, as GET /organization?collaboration_id= does.
        return Response(_organizations(self.principal.visible("organization", row.organizations.all())))


class OrganizationViewSet(ListAction, ApiViewSet):
    queryset = Organization.objects.none()
    serializer_class = OrganizationOutput
    action_clients = {"list": ANY_CLIENT, "retrieve": ANY_CLIENT, "partial_update": (USER, NODE)}

    FILTERS = Filters(name="like", country="text", collaboration_id="id", study_id="id", ids="ids")

    def rows(self, filters: dict, include: set[str]) -> QuerySet:
        return selectors.organization_list(self.principal, filters)

    @extend_schema(request=OrganizationCreateInput)
    def create(self, request: Request) -> Response:
        data = validated(OrganizationCreateInput, request.data)
        organization = services.organization_create(principal=self.principal, data=data)
        return Response(OrganizationOutput(organization).data, status=201)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(OrganizationOutput(selectors.organization_get(self.principal, pk)).data)

    @extend_schema(request=OrganizationUpdateInput)
    def partial_update(self, request: Request, pk: str) -> Response:
        data = validated(OrganizationUpdateInput, request.data)
        organization = selectors.organization_get(self.principal, pk, "edit", fields=data)
        organization = services.organization_update(
            principal=self.principal, organization=organization, data=data
        )
        return Response(OrganizationOutput(organization).data)

    @extend_schema(parameters=[DELETE_DEPENDENTS])
    def destroy(self, request: Request, pk: str) -> Response:
        organization = selectors.organization_get(self.principal, pk, None)
        services.organization_delete(
            principal=self.principal,
            organization=organization,
            delete_dependents=flag(request, "delete_dependents"),
        )
        return Response({"msg": f"Organization id={pk} has been deleted"})


class CollaborationViewSet(_WithMembers):
    queryset = Collaboration.objects.none()
    serializer_class = CollaborationOutput
    action_clients = {"list": (USER, NODE), "retrieve": ANY_CLIENT}

    FILTERS = Filters(name="like", encrypted="bool", organization_id="id", algorithm_store_id="id")

    def rows(self, filters: dict, include: set[str]) -> QuerySet:
        return selectors.collaboration_list(
            self.principal, filters, include_organizations="organizations" in include
        )

    @extend_schema(request=CollaborationCreateInput, responses={200: CollaborationOutput})
    def create(self, request: Request) -> Response:
        data = validated(CollaborationCreateInput, request.data)
        collaboration = services.collaboration_create(principal=self.principal, **data)
        # vantage6 answers 200 here, not 201.
        return Response(self._output(collaboration, False))

    @extend_schema(parameters=[include("organizations")])
    def retrieve(self, request: Request, pk: str) -> Response:
        include = "organizations" in self.includes(request)
        collaboration = selectors.collaboration_get(self.principal, pk, include_organizations=include)
        return Response(self._output(collaboration, include))

    @extend_schema(request=CollaborationUpdateInput)
    def partial_update(self, request: Request, pk: str) -> Response:
        collaboration = selectors.collaboration_for_edit(self.principal, pk)
        data = validated(CollaborationUpdateInput, request.data)
        collaboration = services.collaboration_update(
            principal=self.principal, collaboration=collaboration, data=data
        )
        return Response(self._output(collaboration, False))

    @extend_schema(parameters=[DELETE_DEPENDENTS])
    def destroy(self, request: Request, pk: str) -> Response:
        collaboration = selectors.collaboration_for_edit(self.principal, pk, "delete")
        services.collaboration_delete(
            principal=self.principal,
            collaboration=collaboration,
            delete_dependents=flag(request, "delete_dependents"),
        )
        return Response({"msg": f"Collaboration id={pk} has been deleted"})

    @extend_schema(request=IdInput, responses={200: OrganizationOutput(many=True)})
    @action(detail=True, methods=["post", "delete"], url_path="organization")
    def organizations(self, request: Request, pk: str) -> Response:
        return self._change_members(
            request,
            selectors.collaboration_for_edit(self.principal, pk),
            services.collaboration_organization_add,
            services.collaboration_organization_remove,
        )


class StudyViewSet(_WithMembers):
    queryset = Study.objects.none()
    serializer_class = StudyOutput
    action_clients = {"list": (USER, NODE), "retrieve": ANY_CLIENT}

    FILTERS = Filters(name="like", organization_id="id", collaboration_id="id")

    def rows(self, filters: dict, include: set[str]) -> QuerySet:
        return selectors.study_list(self.principal, filters, include_organizations="organizations" in include)

    @extend_schema(request=StudyCreateInput)
    def create(self, request: Request) -> Response:
        data = validated(StudyCreateInput, request.data)
        study = services.study_create(principal=self.principal, **data)
        return Response(self._output_with_members(study), status=201)

    @extend_schema(parameters=[include("organizations")])
    def retrieve(self, request: Request, pk: str) -> Response:
        include = "organizations" in self.includes(request)
        study = selectors.study_get(self.principal, pk, include_organizations=include)
        return Response(self._output(study, include))

    @extend_schema(request=StudyUpdateInput)
    def partial_update(self, request: Request, pk: str) -> Response:
        study = selectors.study_get(self.principal, pk, "edit")
        data = validated(StudyUpdateInput, request.data)
        data.pop("collaboration_id", None)
        study = services.study_update(principal=self.principal, study=study, data=data)
        return Response(self._output_with_members(study))

    @extend_schema(parameters=[DELETE_DEPENDENTS])
    def destroy(self, request: Request, pk: str) -> Response:
        study = selectors.study_get(self.principal, pk, "delete")
        services.study_delete(
            principal=self.principal, study=study, delete_dependents=flag(request, "delete_dependents")
        )
        return Response({"msg": f"Study id={pk} has been deleted"})

    @extend_schema(request=IdInput, responses={200: OrganizationOutput(many=True)})
    @action(detail=True, methods=["post", "delete"], url_path="organization")
    def organizations(self, request: Request, pk: str) -> Response:
        return self._change_members(
            request,
            selectors.study_for_member_change(self.principal, pk),
            services.study_organization_add,
            services.study_organization_remove,
        )


class AlgorithmStoreViewSet(ListAction, ApiViewSet):
    queryset = AlgorithmStore.objects.none()
    serializer_class = AlgorithmStoreOutput
    action_clients = {"retrieve": (USER, NODE)}

    FILTERS = Filters(name="like", url="like", collaboration_id="id")

    def rows(self, filters: dict, include: set[str]) -> QuerySet:
        return selectors.algorithm_store_list(self.principal, filters)

    @extend_schema(request=AlgorithmStoreCreateInput, responses={201: AlgorithmStoreOutput, **STORE_ERRORS})
    def create(self, request: Request) -> Response:
        data = validated(AlgorithmStoreCreateInput, request.data)
        store = services.algorithm_store_create(
            principal=self.principal,
            name=data["name"],
            url=data["algorithm_store_url"],
            collaboration_id=data.get("collaboration_id"),
            server_url=data.get("server_url"),
            force=data["force"],
            authorization=request.META.get("HTTP_AUTHORIZATION"),
        )
        return Response(AlgorithmStoreOutput(store).data, status=201)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(AlgorithmStoreOutput(selectors.algorithm_store_get(self.principal, pk)).data)

    @extend_schema(request=AlgorithmStoreUpdateInput)
    def partial_update(self, request: Request, pk: str) -> Response:
        store = selectors.algorithm_store_get(self.principal, pk, None)
        data = validated(AlgorithmStoreUpdateInput, request.data)
        store = services.algorithm_store_update(principal=self.principal, store=store, data=data)
        return Response(AlgorithmStoreOutput(store).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("server_url", str, description="This server's URL, as the store knows it.")
        ],
        responses={200: MessageOutput, **STORE_ERRORS},
    )
    def destroy(self, request: Request, pk: str) -> Response:
        store = selectors.algorithm_store_get(self.principal, pk, None)
        services.algorithm_store_delete(
            principal=self.principal,
            store=store,
            server_url=first(request, "server_url"),
            authorization=request.META.get("HTTP_AUTHORIZATION"),
        )
        return Response({"msg": f"Algorithm store id={pk} has been deleted"})
