"""The large-result (blob) store: run inputs and results kept outside the database, by UUID.

``settings.LARGE_RESULT_STORE`` selects it: "" (off), a folder (``/path`` or ``file:///path``) or
``storage:<alias>`` (a Django storage backend from ``STORAGES``). Bytes always move in chunks, so an
upload or download of any size takes constant memory.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, Sum

from tasks.models import Blob, Run
from vantage6.db import operations

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
# An upload that no run names this long after it was made is never used: it gives its room back.
UNUSED_LIFETIME = timedelta(days=1)
# The keys of a transaction lock (this, organization id): the growth of one organization's blobs, in turns.
_QUOTA_LOCK = 0x626C6F62


def blob_storage() -> Storage | None:
    """The configured blob store, or None when large results are off."""
    spec = settings.LARGE_RESULT_STORE.strip()
    if not spec:
        return None
    if spec.startswith("storage:"):
        return storages[spec.removeprefix("storage:")]
    return FileSystemStorage(location=spec.removeprefix("file://"))


def is_blob_id(value: object) -> bool:
    """True for the UUID strings that name blobs."""
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class _ReaderFile(File):
    """A ``File`` over a ``read(n)`` callable that is read exactly once, chunk by chunk."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        super().__init__(None, name="blob")
        self._read = read

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        while chunk := self._read(chunk_size or CHUNK_SIZE):
            yield chunk

    def multiple_chunks(self, chunk_size: int | None = None) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._read(size)


class QuotaExceeded(Exception):
    def __init__(self, used: int) -> None:
        super().__init__(used)
        self.used = used  # bytes the organization's other blobs hold


# One chunk more for the blob, if the organization's blobs stay within the bound with it. The sum is
# read after the organization's lock is taken (PostgreSQL; SQLite runs one writer at a time), so
# parallel uploads of one organization never add their chunks to the same sum.
_GROW = f"""
UPDATE {Blob._meta.db_table} SET size = size + %(chunk)s
WHERE name = %(name)s AND (%(quota)s = 0 OR %(chunk)s + (
    SELECT COALESCE(SUM(size), 0) FROM {Blob._meta.db_table} WHERE organization_id = %(organization)s
) <= %(quota)s)
"""


def _counted(
    read: Callable[[int], bytes], name: str, organization_id: int, quota: int
) -> Callable[[int], bytes]:
    """``read``, each chunk counted for the blob, against the organization's bound (``quota`` bytes; 0:
    none, but counted all the same, for a bound set later)."""

    def counted(size: int) -> bytes:
        chunk = read(size)
        if chunk:
            params: dict[str, str | int] = {
                "chunk": len(chunk),
                "name": name,
                "organization": organization_id,
                "quota": quota,
            }
            with transaction.atomic(), connection.cursor() as cursor:
                if lock := operations(connection).transaction_lock_sql():
                    cursor.execute(lock, [_QUOTA_LOCK, organization_id])
                cursor.execute(_GROW, params)
                if cursor.rowcount != 1:
                    used = Blob.objects.filter(organization_id=organization_id).exclude(name=name)
                    raise QuotaExceeded(used.aggregate(total=Sum("size"))["total"] or 0)
        return chunk

    return counted


def save(storage: Storage, read: Callable[[int], bytes], *, organization_id: int, quota: int) -> str:
    """Store the bytes ``read`` yields under a new UUID, counted for the organization; its name.

    QuotaExceeded when the organization's blobs would take more than ``quota`` bytes (0: no bound):
    then nothing of it is kept.
    """
    name = str(uuid.uuid4())
    Blob.objects.create(name=name, organization_id=organization_id)
    try:
        storage.save(name, _ReaderFile(_counted(read, name, organization_id, quota)))
    except BaseException:
        _forget(storage, name)
        raise
    return name


def _forget(storage: Storage, name: str) -> None:
    with contextlib.suppress(OSError):
        storage.delete(name)
    Blob.objects.filter(name=name).delete()


def stream(storage: Storage, name: str) -> Iterator[bytes]:
    """The bytes of blob ``name``, chunk by chunk (the file is closed at the end)."""
    with storage.open(name, "rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            yield chunk


def unused(made_before: datetime) -> list[str]:
    """The blobs made before ``made_before`` that no run names (as its input or result)."""
    named = Run.objects.filter(Q(input=OuterRef("name")) | Q(result=OuterRef("name")), blob_storage_used=True)
    return list(
        Blob.objects.filter(created_at__lt=made_before).exclude(Exists(named)).values_list("name", flat=True)
    )


def delete(names: Iterable[str]) -> None:
    """Remove the named blobs that no run names any more; a missing blob or store failure is logged,
    never raised. Whoever may view a run reads the names of its blobs and may name them in a run of
    their own (a task's input, a node's result): the deletion or clean-up of that run must not take
    the blob from the runs of others that name it."""
    storage = blob_storage()
    if storage is None:
        return
    names = [name for name in names if is_blob_id(name)]
    named = Run.objects.filter(Q(input__in=names) | Q(result__in=names), blob_storage_used=True)
    still_named = {value for row in named.values_list("input", "result") for value in row}
    for name in names:
        if name in still_named:
            continue
        try:
            storage.delete(name)
        except Exception:  # a failed clean-up must not undo the database change
            logger.exception("Could not delete blob %s", name)
        else:
            Blob.objects.filter(name=name).delete()  # its room is the organization's again
