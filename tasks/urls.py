from django.urls import path
from rest_framework.routers import SimpleRouter

from tasks import views

router = SimpleRouter(trailing_slash=False)
router.register("task", views.TaskViewSet, basename="task")
router.register("run", views.RunViewSet, basename="run")
router.register("result", views.ResultViewSet, basename="result")

urlpatterns = [
    path("task/<int:pk>/status", views.TaskViewSet.as_view({"get": "status"}), name="task-status"),
    path("port", views.PortViewSet.as_view({"post": "create", "delete": "delete_of_run"}), name="port"),
    path("kill/task", views.KillViewSet.as_view({"post": "task"}), name="kill-task"),
    path("kill/node/tasks", views.KillViewSet.as_view({"post": "node_tasks"}), name="kill-node-tasks"),
    path("token/container", views.ContainerTokenViewSet.as_view({"post": "create"}), name="token-container"),
    path("vpn", views.VpnViewSet.as_view({"get": "config"}), name="vpn"),
    path("vpn/update", views.VpnViewSet.as_view({"post": "update_config"}), name="vpn-update"),
    path(
        "vpn/algorithm/addresses",
        views.VpnViewSet.as_view({"get": "addresses"}),
        name="vpn-algorithm-addresses",
    ),
    path("column", views.ColumnViewSet.as_view({"post": "create"}), name="column"),
    path("blobstream/status", views.BlobViewSet.as_view({"get": "status"}), name="blobstream-status"),
    path("blobstream", views.BlobViewSet.as_view({"post": "upload"}), name="blobstream"),
    path("blobstream/<str:uuid>", views.BlobViewSet.as_view({"get": "download"}), name="blobstream-blob"),
    *router.urls,
]
