"""Store fixtures shared by the store contract tests and the PostgreSQL tests.

PostgreSQL is real: ``AVO_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/test``) names a server and a database
to connect to; each test session (each xdist worker) creates its own
``avo_test_<random>`` database there and drops it at the end, so runs never
collide. A missing server fails these tests; it never skips them
(``.ci/check-postgres`` says so before pytest starts).

Import the fixtures you use into a test module: ``from stores import store``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from avo_cli.store.base import NewJob, Store

PG_ADMIN = os.environ.get("AVO_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgres")


def with_dbname(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def create_database() -> str:
    """Create an empty ``avo_test_<random>`` database; return its URL."""
    import psycopg

    name = f"avo_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL at {PG_ADMIN} is not answering (set AVO_TEST_PG; see "
            f".ci/check-postgres): {exc}",
            pytrace=False,
        )
    return with_dbname(PG_ADMIN, name)


def drop_database(url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_session_url() -> Iterator[str]:
    """One migrated database per test session, dropped at the end."""
    url = create_database()
    from avo_cli.store.postgres import PostgresStore

    PostgresStore(url).close()  # migrate once
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def pg_url(pg_session_url: str) -> str:
    """The session database, emptied (ids restart at 1) for this test."""
    import psycopg

    with psycopg.connect(pg_session_url, autocommit=True) as conn:
        conn.execute("TRUNCATE jobs, documents RESTART IDENTITY CASCADE")
    return pg_session_url


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A brand-new empty database (no schema), for migration tests."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A database URL for ``backend``: a SQLite path or an emptied PostgreSQL database."""
    if backend == "sqlite":
        return str(tmp_path / "store.db")
    return str(request.getfixturevalue("pg_url"))


StoreFactory = Callable[[], Store]


@pytest.fixture
def open_stores(store_url: str) -> Iterator[StoreFactory]:
    """Open more stores (connections) on the same database; all closed at the end."""
    from avo_cli.store import open_store

    opened: list[Store] = []

    def make() -> Store:
        s = open_store(store_url)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(open_stores: StoreFactory) -> Store:
    return open_stores()


def new_job(
    text: str = "# Guide\n\n- Write tests.\n", source: str = "guide.md", event_id: str | None = None
) -> NewJob:
    import hashlib

    data = text.encode()
    return NewJob(
        event_id=event_id or str(uuid.uuid4()),
        source=source,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        text=text,
    )
