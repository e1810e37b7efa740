from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from accounts.authentication import register_container_check
        from accounts.services import UserDependents, register_user_dependents
        from nodes.events import on_housekeeping, on_node_report
        from tasks import metrics, selectors, services, signals  # noqa: F401 - signals connects the blob clean-up of deleted runs
        from tasks.models import Task
        from vantage6.api.observability import register_gauges

        register_gauges(metrics.gauges)
        on_node_report(
            "algorithm_status_change", services.run_status_reported, on_loop=services.run_status_read_on_loop
        )
        on_node_report("algorithm_log", services.run_log_reported)
        on_housekeeping(services.runs_cleanup_if_due)
        on_housekeeping(services.unused_blobs_cleanup_if_due)
        register_container_check(selectors.container_task)
        register_user_dependents(
            UserDependents(
                "tasks",
                exist=lambda user: Task.objects.filter(init_user=user).exists(),
                delete=services.user_tasks_delete,
            )
        )
