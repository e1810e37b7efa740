from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from nodes.events import on_housekeeping, on_node_report
        from tasks import metrics, signals  # noqa: F401 - signals connects the blob clean-up of deleted runs
        from tasks.services import run_log_reported, run_status_reported, runs_cleanup_if_due
        from vantage6.api.observability import register_gauges

        register_gauges(metrics.gauges)
        on_node_report("algorithm_status_change", run_status_reported)
        on_node_report("algorithm_log", run_log_reported)
        on_housekeeping(runs_cleanup_if_due)
