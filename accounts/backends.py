"""Django authentication backend that answers admin permissions from the rule engine."""

from __future__ import annotations

from django.contrib.auth.backends import BaseBackend


class RuleBackend(BaseBackend):
    """Logs users in with their bcrypt password; permissions come from vantage6 rules."""

    def authenticate(self, request, username: str | None = None, password: str | None = None, **_):
        from accounts.models import User

        user = User.objects.filter(username=username).first()
        if user is not None and password is not None and user.check_password(password):
            return user
        return None

    def get_user(self, user_id: int):
        from accounts.models import User

        return User.objects.filter(pk=user_id).first()
