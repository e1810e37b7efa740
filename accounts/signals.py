"""Seed the rule catalogue and built-in roles after every migrate."""

from __future__ import annotations

from django.db.models.signals import post_migrate


def _seed(sender, **kwargs) -> None:  # noqa: ARG001
    if sender.name != "accounts":
        return
    from accounts.catalogue import seed_rules_and_roles

    seed_rules_and_roles()


def connect() -> None:
    post_migrate.connect(_seed, dispatch_uid="accounts.seed_rules_and_roles")
