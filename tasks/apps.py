from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from tasks import metrics, signals  # noqa: F401 - signals connects the blob clean-up of deleted runs
        from vantage6.api.observability import register_gauges

        register_gauges(metrics.gauges)
