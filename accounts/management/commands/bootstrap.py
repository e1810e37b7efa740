"""Prepare the server for its first (or next) start: migrate, seed, and make sure root exists."""

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from rest_framework import serializers

from accounts.serializers import validate_password_policy
from accounts.services import root_user_ensure
from vantage6.startup import deployment_warnings, secure_data_files


class Command(BaseCommand):
    help = "Apply migrations, seed rules and built-in roles, and create the root user on a first start."

    def handle(self, *_args: object, **_options: object) -> None:
        for warning in [*secure_data_files(), *deployment_warnings()]:
            self.stderr.write(self.style.WARNING(f"Warning: {warning}"))
        call_command("migrate", interactive=False, verbosity=0)
        password = settings.ROOT_PASSWORD
        root = root_user_ensure(password=password, password_hash=settings.ROOT_PASSWORD_HASH)
        refused = root.created and password and _policy_problems(password)
        if refused:
            self.stderr.write(
                self.style.WARNING(
                    "Warning: root was created with a V6_ROOT_PASSWORD the password policy refuses "
                    f"({refused}): change it after logging in."
                )
            )
        base = f"http://{settings.HOST}:{settings.PORT}"
        self.stdout.write(f"API:      {base}{settings.API_PATH}")
        self.stdout.write(f"API docs: {base}{settings.API_PATH}/docs")
        self.stdout.write(f"Admin:    {base}/admin/")
        if root.generated_password:
            created = f"Created user 'root' with password: {root.generated_password}"
            self.stdout.write(self.style.WARNING(created))
            self.stdout.write("This password is shown only once; change it after logging in.")
        else:
            self.stdout.write(
                "Log in as 'root' with the password you set (V6_ROOT_PASSWORD or "
                "V6_INIT_SUPER_PASS_HASHED on the first start)."
            )


def _policy_problems(password: str) -> str:
    """What the password policy the API sets passwords by finds wrong with ``password`` (empty: nothing).
    The operator chose it, as vantage6 lets them: a start is warned, not stopped."""
    try:
        validate_password_policy(password)
    except serializers.ValidationError as exc:
        return "; ".join(str(message) for message in exc.detail)
    return ""
