"""Prepare the server for its first (or next) start: migrate, seed, and make sure root exists."""

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from rest_framework import serializers

from accounts.selectors import root_user_exists
from accounts.serializers import validate_password_policy
from accounts.services import root_user_ensure
from vantage6.startup import deployment_warnings, secure_data_files


class Command(BaseCommand):
    help = "Apply migrations, seed rules and built-in roles, and create the root user on a first start."

    def handle(self, *_args: object, **_options: object) -> None:
        for warning in [*secure_data_files(), *deployment_warnings()]:
            self.stderr.write(self.style.WARNING(f"Warning: {warning}"))
        call_command("migrate", interactive=False, verbosity=0)
        if settings.ROOT_PASSWORD and not root_user_exists():
            _require_password_policy(settings.ROOT_PASSWORD)
        _, generated = root_user_ensure(
            password=settings.ROOT_PASSWORD, password_hash=settings.ROOT_PASSWORD_HASH
        )
        base = f"http://{settings.HOST}:{settings.PORT}"
        self.stdout.write(f"API:      {base}{settings.API_PATH}")
        self.stdout.write(f"API docs: {base}{settings.API_PATH}/docs")
        self.stdout.write(f"Admin:    {base}/admin/")
        if generated:
            self.stdout.write(self.style.WARNING(f"Created user 'root' with password: {generated}"))
            self.stdout.write("This password is shown only once; change it after logging in.")
        else:
            self.stdout.write(
                "Log in as 'root' with the password you set (V6_ROOT_PASSWORD or "
                "V6_INIT_SUPER_PASS_HASHED on the first start)."
            )


def _require_password_policy(password: str) -> None:
    """The first root password follows the policy the API sets passwords by: a root the API would not
    have given this password (too weak, or wider than bcrypt reads) is not created with it."""
    try:
        validate_password_policy(password)
    except serializers.ValidationError as exc:
        problems = "; ".join(str(message) for message in exc.detail)
        raise CommandError(f"V6_ROOT_PASSWORD refused: {problems}", returncode=2) from None
