"""Deleting a run (directly or through its task, organization or collaboration) deletes its blobs."""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from tasks import blobs
from tasks.models import Run


@receiver(post_delete, sender=Run, dispatch_uid="tasks.run_blobs")
def _delete_blobs_of_run(sender, instance: Run, **kwargs) -> None:  # noqa: ARG001 - signal signature
    if instance.blob_storage_used:
        names = [value for value in (instance.input, instance.result) if value]
        transaction.on_commit(lambda: blobs.delete(names))
