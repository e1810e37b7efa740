from django.urls import path
from rest_framework.routers import SimpleRouter

from nodes.views import (
    CollaborationNodeViewSet,
    NodeRecoverView,
    NodeTokenValidateView,
    NodeTokenView,
    NodeViewSet,
)

router = SimpleRouter(trailing_slash=False)
router.register("node", NodeViewSet, basename="node")
# Only /collaboration/<id>/node: the other routes of a collaboration are in collaborations.urls.
router.register("collaboration", CollaborationNodeViewSet, basename="collaboration")

urlpatterns = [
    path("token/node", NodeTokenView.as_view(), name="token-node"),
    path("token/node/validate", NodeTokenValidateView.as_view(), name="token-node-validate"),
    path("recover/node", NodeRecoverView.as_view(), name="recover-node"),
    *router.urls,
]
