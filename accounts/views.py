"""Endpoints of tokens, account recovery, users, roles, rules and the audit trail."""

from __future__ import annotations

from typing import cast

from django.db.models import QuerySet
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import login, services, sessions
from accounts.api import NODE, USER, ApiViewSet, ClientTypeGate, caller
from accounts.authentication import RefreshJWTAuthentication
from accounts.models import AuditAction, AuditEntry, Role, Rule, User
from accounts.permissions import fetch, get_for
from accounts.selectors import audit_list, role_list, rule_list, user_by_pk, user_list
from accounts.serializers import (
    AuditEntryOutput,
    LoginInput,
    NodeTokensOutput,
    PasswordChangeInput,
    PasswordResetInput,
    RecoverLostInput,
    ResetTokenInput,
    RoleCreateInput,
    RoleOutput,
    RoleUpdateInput,
    RuleOutput,
    TokenRevokeInput,
    TokenValidOutput,
    TwoFactorSetupOutput,
    UserCreateInput,
    UserOutput,
    UserPermissionsOutput,
    UserTokensOutput,
    UserUpdateInput,
)
from vantage6.api.errors import bad_request, flatten
from vantage6.api.lists import ListAction
from vantage6.api.params import Filters, OneOf, flag
from vantage6.api.schema import DELETE_DEPENDENTS, MessageOutput, flag_parameter
from vantage6.api.serializers import validated
from vantage6.api.views import ApiView


def _login_response(result: login.LoginResult) -> Response:
    return Response(result.body, headers=result.headers)


def _one_of(name: str, *outputs: type[serializers.Serializer]) -> PolymorphicProxySerializer:
    return PolymorphicProxySerializer(
        component_name=name, serializers=list(outputs), resource_type_field_name=None
    )


# A login answers tokens, or (with two-factor authentication) a new secret or a request for the code.
LOGIN_ANSWER = _one_of("LoginAnswer", UserTokensOutput, TwoFactorSetupOutput, MessageOutput)


# --- tokens -----------------------------------------------------------------------------------------
class PublicView(ApiView):
    """Reachable without a token (login and recovery)."""

    authentication_classes: list = []
    permission_classes: list = []


class TokenUserView(PublicView):
    @extend_schema(request=LoginInput, responses={200: LOGIN_ANSWER, 401: None, 429: None})
    def post(self, request: Request) -> Response:
        data = validated(LoginInput, request.data)
        with login.failures_limited(request.META, AuditAction.USER_LOGIN_FAILED):
            result = login.login(
                username=data["username"], password=data["password"], mfa_code=data.get("mfa_code")
            )
        return _login_response(result)


class TokenRefreshView(ApiView):
    """A new token pair for the holder of a refresh token (a user or a node)."""

    authentication_classes = [RefreshJWTAuthentication]
    permission_classes = [ClientTypeGate]
    clients = (USER, NODE)

    @extend_schema(request=None, responses=_one_of("Tokens", UserTokensOutput, NodeTokensOutput))
    def post(self, request: Request) -> Response:
        principal = caller(request)
        identity = principal.user if principal.is_user else principal.node
        tokens = sessions.refresh_login(principal, cast(dict, request.auth))
        return _login_response(login.token_body(identity, principal.kind, tokens))


class TokenRevokeView(ApiView):
    """Log out: end the login of the access token, or with ``all`` every login of its holder."""

    permission_classes = [ClientTypeGate]
    clients = (USER, NODE)

    @extend_schema(request=TokenRevokeInput, responses=MessageOutput)
    def post(self, request: Request) -> Response:
        if validated(TokenRevokeInput, request.data).get("all"):
            sessions.end_all_logins_of(caller(request))
            return Response({"msg": "All your logins have ended"})
        sessions.end_login(caller(request), cast(dict, request.auth))
        return Response({"msg": "You are logged out"})


class TokenUserValidateView(ApiView):
    permission_classes = [ClientTypeGate]
    clients = (USER,)

    @extend_schema(request=None, responses=TokenValidOutput)
    def post(self, request: Request) -> Response:
        user = caller(request).user
        return Response(
            {
                "msg": "Token is valid",
                "user_id": user.pk,
                "username": user.username,
                "email": user.email,
                "organization_id": user.organization_id,
            }
        )


# --- recovery -----------------------------------------------------------------------------------------
class RecoverLostView(PublicView):
    @extend_schema(request=RecoverLostInput, responses={200: MessageOutput, 429: None})
    def post(self, request: Request) -> Response:
        data = validated(RecoverLostInput, request.data)
        login.password_recovery_request(request.META, username=data.get("username"), email=data.get("email"))
        return Response({"msg": login.RECOVERY_SENT})


class RecoverResetView(PublicView):
    @extend_schema(request=PasswordResetInput, responses={200: MessageOutput, 401: None, 422: None})
    def post(self, request: Request) -> Response:
        data = validated(PasswordResetInput, request.data)
        login.password_reset(token=data["reset_token"], password=data["password"])
        return Response({"msg": "Your password has been reset."})


class Recover2faLostView(PublicView):
    @extend_schema(request=LoginInput, responses={200: MessageOutput, 401: None, 429: None})
    def post(self, request: Request) -> Response:
        """Mail a token to reset two-factor authentication to the owner of these credentials. A server
        without an SMTP server (`V6_SMTP_SERVER`) cannot: it answers 400 before the credentials are read."""
        data = validated(LoginInput, request.data)
        with login.failures_limited(request.META, AuditAction.USER_LOGIN_FAILED):
            login.two_factor_recovery_request(username=data["username"], password=data["password"])
        return Response(
            {"msg": "An e-mail with a token to reset your two-factor authentication has been sent."}
        )


class Recover2faResetView(PublicView):
    @extend_schema(request=ResetTokenInput, responses={200: TwoFactorSetupOutput, 401: None, 422: None})
    def post(self, request: Request) -> Response:
        data = validated(ResetTokenInput, request.data)
        return Response(login.two_factor_reset(token=data["reset_token"]))


class PasswordChangeView(ApiView):
    permission_classes = [ClientTypeGate]
    clients = (USER,)

    @extend_schema(request=PasswordChangeInput, responses=MessageOutput)
    def patch(self, request: Request) -> Response:
        data = validated(PasswordChangeInput, request.data)
        login.password_change(
            principal=caller(request),
            current_password=data["current_password"],
            new_password=data["new_password"],
        )
        return Response({"msg": "Your password has been changed!"})


# --- users ------------------------------------------------------------------------------------------
class UserViewSet(ListAction, ApiViewSet):
    queryset = User.objects.all()
    serializer_class = UserOutput

    def _get(self, pk: str, operation: str | None = None) -> User:
        if pk.isdigit() and int(pk) == self.principal.id:
            user = self.principal.user  # already loaded by the authentication
            self.principal.require(operation is None or self.principal.allows("user", user, operation))
            return user
        return get_for(self.principal, user_by_pk, pk, operation, missing=f"User with id={pk} not found!")

    FILTERS = Filters(
        username="like", firstname="like", lastname="like", email="like", organization_id="id",
        collaboration_id="id", role_id="id", rule_id="id", last_seen_from="date", last_seen_till="date",
    )  # fmt: skip

    def rows(self, filters: dict, include: set[str]) -> QuerySet:
        return user_list(self.principal, filters)

    @extend_schema(request=UserCreateInput)
    def create(self, request: Request) -> Response:
        data = validated(UserCreateInput, request.data)
        user = services.user_create(
            principal=self.principal,
            username=data["username"],
            email=data["email"],
            password=data["password"],
            firstname=data.get("firstname") or "",
            lastname=data.get("lastname") or "",
            organization_id=data.get("organization_id"),
            role_ids=data.get("roles") or (),
            rule_ids=data.get("rules") or (),
        )
        return Response(UserOutput(user).data, status=201)

    @extend_schema(
        responses=UserPermissionsOutput,
        parameters=[flag_parameter("include_permissions", "Add the user's permissions")],
    )
    def retrieve(self, request: Request, pk: str) -> Response:
        user = self._get(pk, "view")
        if flag(request, "include_permissions"):
            return Response(UserPermissionsOutput(user, context={"viewer": self.principal}).data)
        return Response(UserOutput(user).data)

    @extend_schema(request=UserUpdateInput)
    def partial_update(self, request: Request, pk: str) -> Response:
        user = self._get(pk)
        if isinstance(request.data, dict) and "password" in request.data:
            raise bad_request("You cannot change your password here!")
        data = validated(UserUpdateInput, request.data)
        login_id = request.auth.get("sid") if isinstance(request.auth, dict) else None
        user = services.user_update(principal=self.principal, user=user, data=data, current_login=login_id)
        return Response(UserOutput(user).data)

    @extend_schema(parameters=[DELETE_DEPENDENTS])
    def destroy(self, request: Request, pk: str) -> Response:
        user = self._get(pk)
        services.user_delete(
            principal=self.principal, user=user, delete_dependents=flag(request, "delete_dependents")
        )
        return Response({"msg": f"user id={pk} is removed from the database"})


# --- roles ------------------------------------------------------------------------------------------
def _role_input(serializer_class: type[serializers.Serializer], data: object) -> dict:
    """Role endpoints answer validation errors as ``{"msg": {field: [...]}}``, as vantage6 does."""
    try:
        return validated(serializer_class, data)
    except serializers.ValidationError as error:
        raise bad_request(flatten(error.detail)) from None


class RoleViewSet(ListAction, ApiViewSet):
    queryset = Role.objects.all()
    serializer_class = RoleOutput
    field_errors_in_msg = True

    def _get(self, pk: str, operation: str | None = None) -> Role:
        return get_for(
            self.principal, Role.objects.all(), pk, operation, missing=f"Role with id={pk} not found!"
        )

    FILTERS = Filters(
        organization_id="ids", include_root="flag", collaboration_id="id", name="likes",
        description="likes", rule_id="id", user_id="id",
    )  # fmt: skip

    def rows(self, filters: dict, include: set[str]) -> QuerySet:
        return role_list(self.principal, filters)

    @extend_schema(request=RoleCreateInput)
    def create(self, request: Request) -> Response:
        data = _role_input(RoleCreateInput, request.data)
        role = services.role_create(
            principal=self.principal,
            name=data["name"],
            description=data.get("description") or "",
            rule_ids=data["rules"],
            organization_id=data.get("organization_id"),
        )
        return Response(RoleOutput(role).data, status=201)

    def retrieve(self, request: Request, pk: str) -> Response:
        role = self._get(pk, "view")
        return Response(RoleOutput(role).data)

    @extend_schema(request=RoleUpdateInput)
    def partial_update(self, request: Request, pk: str) -> Response:
        role = self._get(pk)
        if isinstance(request.data, dict) and "organization_id" in request.data:
            raise bad_request({"organization_id": ["The organization of a role cannot be changed"]})
        data = _role_input(RoleUpdateInput, request.data)
        role = services.role_update(principal=self.principal, role=role, data=data)
        return Response(RoleOutput(role).data)

    @extend_schema(parameters=[DELETE_DEPENDENTS])
    def destroy(self, request: Request, pk: str) -> Response:
        services.role_delete(
            principal=self.principal, role=self._get(pk), delete_dependents=flag(request, "delete_dependents")
        )
        return Response({"msg": "Role removed from the database."})

    @extend_schema(request=None, responses={201: RuleOutput(many=True)}, methods=["POST"])
    @extend_schema(request=None, responses={200: RuleOutput(many=True)}, methods=["DELETE"])
    @action(detail=True, methods=["post", "delete"], url_path=r"rule/(?P<rule_id>[0-9]+)")
    def rule(self, request: Request, pk: str, rule_id: str) -> Response:
        role = self._get(pk)
        rule = fetch(Rule.objects.all(), rule_id, missing=f"Rule with id={rule_id} not found!")
        add = request.method == "POST"
        services.role_rule_change(principal=self.principal, role=role, rule=rule, add=add)
        rules = RuleOutput(role.rules.order_by("id"), many=True).data
        return Response(rules, status=201 if add else 200)


# --- rules ------------------------------------------------------------------------------------------
class RuleViewSet(ListAction, ApiViewSet):
    """The read-only rule catalogue; any logged-in user may read it."""

    queryset = Rule.objects.all()
    serializer_class = RuleOutput

    FILTERS = Filters(
        name="text", operation="text", scope="text", role_id="id", user_id="id", no_pagination="flag"
    )

    def rows(self, filters: dict, include: set[str]) -> QuerySet:
        return rule_list(self.principal, filters)

    def paginated(self, filters: dict) -> bool:
        return not filters.get("no_pagination")

    def retrieve(self, request: Request, pk: str) -> Response:
        rule = fetch(Rule.objects.all(), pk, missing=f"Rule with id={pk} not found!")
        return Response(RuleOutput(rule).data)


# --- the audit trail ------------------------------------------------------------------------------
class AuditViewSet(ListAction, ApiViewSet):
    """The audit trail, read-only: what the ``audit`` rules let the caller see."""

    queryset = AuditEntry.objects.all()
    serializer_class = AuditEntryOutput

    FILTERS = Filters(
        actor_type="text", actor_id="int", action=OneOf(AuditAction.values), object_type="text",
        object_id="int", organization_id="id", since="time", until="time",
    )  # fmt: skip

    def rows(self, filters: dict, include: set[str]) -> QuerySet:
        return audit_list(self.principal, filters)

    def retrieve(self, request: Request, pk: str) -> Response:
        entry = get_for(
            self.principal, AuditEntry.objects.all(), pk, missing=f"Audit entry with id={pk} not found!"
        )
        return Response(AuditEntryOutput(entry).data)
