"""The large-result (blob) store: run inputs and results kept outside the database, by UUID.

``settings.LARGE_RESULT_STORE`` selects it: "" (off), a folder (``/path`` or ``file:///path``) or
``storage:<alias>`` (a Django storage backend from ``STORAGES``). Bytes always move in chunks, so an
upload or download of any size takes constant memory.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024


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


def save(storage: Storage, read: Callable[[int], bytes]) -> str:
    """Store the bytes ``read`` yields under a new UUID and return it."""
    name = str(uuid.uuid4())
    storage.save(name, _ReaderFile(read))
    return name


def stream(storage: Storage, name: str) -> Iterator[bytes]:
    """The bytes of blob ``name``, chunk by chunk (the file is closed at the end)."""
    with storage.open(name, "rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            yield chunk


def delete(names: Iterable[str]) -> None:
    """Remove the named blobs; a missing blob or store failure is logged, never raised."""
    storage = blob_storage()
    if storage is None:
        return
    for name in names:
        if not is_blob_id(name):
            continue
        try:
            storage.delete(name)
        except Exception:  # a failed clean-up must not undo the database change
            logger.exception("Could not delete blob %s", name)
