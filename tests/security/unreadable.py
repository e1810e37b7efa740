"""What the tests of reads a caller must not make assert of the rows out of its reach."""

from __future__ import annotations

from collections.abc import Iterable


def assert_reads_none_of(api, headers: dict, rows: dict[str, int], lists: Iterable[str] = ()) -> None:
    """The caller of ``headers`` reads none of ``rows`` (a collection's path: the id of a row in it): the
    row's own path is refused (401 or 404) and the collection's list leaves it out; each of ``lists`` (a
    filtered list) is refused or empty."""
    for collection, row_id in rows.items():
        assert api.get(f"{collection}/{row_id}", **headers).status_code in (401, 404), collection
        assert row_id not in {row["id"] for row in api.get(collection, **headers).json()["data"]}, collection
    for path in lists:
        response = api.get(path, **headers)
        assert response.status_code in (401, 404) or response.json()["data"] == [], path
