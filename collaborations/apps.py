from django.apps import AppConfig


class CollaborationsConfig(AppConfig):
    name = "collaborations"
    default_auto_field = "django.db.models.AutoField"
