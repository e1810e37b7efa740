"""Nodes (one per organization and collaboration) and the configuration they share."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import bcrypt
from django.db import models

from accounts.models import Authenticatable


def api_key_digest(api_key: str) -> str:
    """The stored, indexed form of a node API key.

    Keys are random UUID4s (122 bits), so one SHA-256 is enough to make the stored form useless to a
    reader of the database, and it lets login find the node in one indexed lookup.
    """
    return hashlib.sha256(api_key.strip().lower().encode()).hexdigest()


# Keys imported from vantage6 are stored as its bcrypt hashes ("$2b$..."); a digest is hex, never "$".
LEGACY_HASH_PREFIX = "$2"


class Node(Authenticatable):
    authenticatable_ptr = models.OneToOneField(
        Authenticatable, parent_link=True, primary_key=True, on_delete=models.CASCADE, related_name="node"
    )
    name = models.CharField(max_length=256, unique=True)
    api_key_hash = models.CharField(max_length=64, unique=True)
    organization = models.ForeignKey(
        "collaborations.Organization", on_delete=models.CASCADE, related_name="nodes"
    )
    collaboration = models.ForeignKey(
        "collaborations.Collaboration", null=True, blank=True, on_delete=models.CASCADE, related_name="nodes"
    )

    class Meta:
        db_table = "node"
        constraints = [
            # One node per organization and collaboration; nodes without a collaboration are not limited.
            models.UniqueConstraint(
                fields=["organization", "collaboration"], name="node_one_per_org_and_collab"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.type = "node"
        super().save(*args, **kwargs)

    def set_api_key(self, api_key: str) -> None:
        self.api_key_hash = api_key_digest(api_key)

    @property
    def has_legacy_api_key(self) -> bool:
        return self.api_key_hash.startswith(LEGACY_HASH_PREFIX)

    def check_api_key(self, api_key: str) -> bool:
        if self.has_legacy_api_key:
            try:
                return bcrypt.checkpw(api_key.encode(), self.api_key_hash.encode())
            except ValueError:
                return False
        return hmac.compare_digest(self.api_key_hash, api_key_digest(api_key))


class NodeConfig(models.Model):
    """One value of the configuration a node shares over its socket (a list is several rows)."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="config")
    key = models.CharField(max_length=256)
    value = models.TextField(blank=True, default="")

    class Meta:
        db_table = "nodeconfig"


class SocketProcess(models.Model):
    """A live server process, which records a beat every heartbeat round; one that falls silent is
    taken for dead by another, which marks offline the identities whose newest connection it held."""

    id = models.CharField(max_length=32, primary_key=True)
    beat_at = models.DateTimeField()

    class Meta:
        db_table = "socket_process"


class NodeMetrics(models.Model):
    """The last resource report (``node_metrics_update``) of a node, served as Prometheus gauges.

    Kept in the database so that every server process reports the same values, whichever process
    received the report.
    """

    node = models.OneToOneField(Node, primary_key=True, on_delete=models.CASCADE, related_name="metrics")
    os = models.CharField(max_length=64, blank=True, default="")
    platform = models.CharField(max_length=64, blank=True, default="")
    # {metric: number} and, for GPU metrics, {metric: [number per GPU]}.
    values = models.JSONField(default=dict)
    reported_at = models.DateTimeField()

    class Meta:
        db_table = "node_metrics"


class SocketConnection(models.Model):
    """The newest Socket.IO connection of a user or node: its disconnect may mark the identity offline,
    an older one's may not (it lost the race with a quick reconnect)."""

    identity = models.OneToOneField(
        Authenticatable, primary_key=True, on_delete=models.CASCADE, related_name="socket_connection"
    )
    generation = models.CharField(max_length=32)
    # The server process holding that connection (a SocketProcess id, not a key: rows outlive it).
    process = models.CharField(max_length=32, db_index=True, default="")
    # What the undo of a refused connect of ``generation`` puts back (``unconnected``): the connection it
    # replaced, or of a refused connect it replaced, what that one replaced; "" nothing (the row goes),
    # NULL not recorded here (the refused connect knows what it replaced).
    replaced_generation = models.CharField(max_length=32, null=True, default=None)
    replaced_process = models.CharField(max_length=32, default="")
    # The undos of refused connects that came while the chain of replacements did not reach them (two or
    # more connects replaced theirs): generation: what it replaced, [generation, process] or None.
    deeper_undos = models.JSONField(default=dict)

    class Meta:
        db_table = "socket_connection"
