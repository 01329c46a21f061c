"""Job stores. ``open_store`` picks the backend from the database setting.

A plain path or ``sqlite:///PATH`` is SQLite; ``postgresql://`` or
``postgres://`` selects PostgreSQL (the ``avo-cli[postgres]`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from avo_cli.store.base import Store


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def open_store(url: str, *, create: bool = True) -> Store:
    """Open (and on first use create and migrate) the store at ``url``.

    ``create=False`` is for read-only commands: a missing SQLite file is
    reported as "no such job" rather than created.
    """
    if is_postgres(url):
        from avo_cli.store.postgres import PostgresStore

        return PostgresStore(url)
    from avo_cli.store.sqlite import SQLiteStore

    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    return SQLiteStore(path, create=create)
