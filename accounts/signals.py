"""Seed the rule catalogue and built-in roles after every migrate; end the logins of deleted users
and nodes for those who act on it (``logins_ended``); tell them of changes of rights
(``rights_changed``)."""

from __future__ import annotations

from django.db.models.signals import post_delete, post_migrate
from django.dispatch import Signal

# Sent within the transaction of a change of what users and nodes may see, for those who act on it
# at once, such as live sockets: ``identities`` (user and node ids) got other roles, rules, organization
# or collaboration; ``roles`` got other rules or are about to be deleted (their holders);
# ``organizations`` joined or left collaborations (their users and nodes); ``collaborations`` (True): a
# collaboration was created or deleted (the users whose rights reach every collaboration).
rights_changed = Signal()


def _seed(sender, **kwargs) -> None:  # noqa: ARG001
    if sender.name != "accounts":
        return
    from accounts.catalogue import seed_rules_and_roles

    seed_rules_and_roles()


def _deleted(sender, instance, **kwargs) -> None:  # noqa: ARG001
    from accounts.sessions import logins_ended

    logins_ended.send(sender=None, identity_id=instance.pk, logins=None)


def connect() -> None:
    from accounts.models import Authenticatable

    post_migrate.connect(_seed, dispatch_uid="accounts.seed_rules_and_roles")
    # Also when a deletion cascades (an organization's users and nodes).
    post_delete.connect(_deleted, sender=Authenticatable, dispatch_uid="accounts.logins_of_deleted")
