from django.urls import path
from rest_framework.routers import SimpleRouter

from accounts import views

router = SimpleRouter(trailing_slash=False)
router.register("user", views.UserViewSet, basename="user")
router.register("role", views.RoleViewSet, basename="role")
router.register("rule", views.RuleViewSet, basename="rule")
router.register("audit", views.AuditViewSet, basename="audit")

urlpatterns = [
    path("token/user", views.TokenUserView.as_view(), name="token-user"),
    path("token/user/validate", views.TokenUserValidateView.as_view(), name="token-user-validate"),
    path("token/refresh", views.TokenRefreshView.as_view(), name="token-refresh"),
    path("token/revoke", views.TokenRevokeView.as_view(), name="token-revoke"),
    path("recover/lost", views.RecoverLostView.as_view(), name="recover-lost"),
    path("recover/reset", views.RecoverResetView.as_view(), name="recover-reset"),
    path("recover/2fa/lost", views.Recover2faLostView.as_view(), name="recover-2fa-lost"),
    path("recover/2fa/reset", views.Recover2faResetView.as_view(), name="recover-2fa-reset"),
    path("password/change", views.PasswordChangeView.as_view(), name="password-change"),
    *router.urls,
]
