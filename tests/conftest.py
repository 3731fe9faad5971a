"""Shared fixtures: one real PostgreSQL per test run (embedded unless TEST_DATABASE_URL is set)."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from service.catalog import store as catalog_store
from service.db import embedded
from service.db import engine as db_engine
from service.db.migrate import migrate
from service.settings import DatabaseSettings, Settings
from tests import citus_cluster, recorded_sql


@pytest.fixture(scope="session")
def database_dsn() -> Iterator[str]:
    """A fresh database for this run: on TEST_DATABASE_URL's server, or an embedded one."""
    external = os.environ.get("TEST_DATABASE_URL")
    name = f"billing_test_{uuid.uuid4().hex[:8]}"
    if external:
        yield db_engine._with_database(external, name)
        return
    data_dir = Path(tempfile.mkdtemp(prefix="kefu-billing-test-"))
    admin = embedded.start(data_dir, delete_on_exit=True)
    yield db_engine._with_database(admin, name)


@pytest.fixture(scope="session")
def settings(database_dsn: str) -> Settings:
    return Settings(
        environment="test",
        log_format="console",
        key_cache_seconds=0.5,
        database=DatabaseSettings(
            url=database_dsn, pool_max=30, citus_shard_count=citus_cluster.SHARD_COUNT
        ),
    )


@pytest.fixture(scope="session")
async def database(settings: Settings, database_dsn: str) -> AsyncIterator[db_engine.Database]:
    await citus_cluster.prepare_database(database_dsn)  # a Citus database on a coordinator
    database = db_engine.connect(database_dsn)
    # Every statement the suite's pool sends is noted: integration tests check the row locks.
    database.engine.config["connection_class"] = recorded_sql.RecordingConnection
    await migrate(database, shard_count=settings.database.citus_shard_count)
    await database.start_pool(min_size=2, max_size=30)
    await catalog_store.publish_shipped()
    yield database
    await database.close()
