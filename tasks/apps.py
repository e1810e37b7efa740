from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from tasks import signals  # noqa: F401 - connects the blob clean-up of deleted runs
