from django.apps import AppConfig


class CollaborationsConfig(AppConfig):
    name = "collaborations"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from accounts.permissions import register_collaborations
        from collaborations.models import Collaboration, Organization

        register_collaborations(
            organizations=Organization.objects.all,
            collaborations=Collaboration.objects.all,
            memberships=Collaboration.organizations.through.objects.all,
        )
