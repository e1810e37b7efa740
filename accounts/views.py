"""Endpoints of users, roles and rules."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Rule
from accounts.selectors import rule_list
from accounts.serializers import RuleOutput
from vantage6.api.errors import not_found
from vantage6.api.pagination import paginate
from vantage6.api.params import flag
from vantage6.api.views import ApiViewSet


class RuleViewSet(ApiViewSet):
    """The read-only rule catalogue; any logged-in user may read it."""

    queryset = Rule.objects.all()
    serializer_class = RuleOutput

    def list(self, request: Request) -> Response:
        return paginate(
            request,
            rule_list(request),
            lambda rows: RuleOutput(rows, many=True).data,
            paginated=not flag(request, "no_pagination"),
        )

    def retrieve(self, request: Request, pk: str) -> Response:
        rule = Rule.objects.filter(pk=pk).first()
        if rule is None:
            raise not_found(f"Rule id={pk} not found!")
        return Response(RuleOutput(rule).data)
