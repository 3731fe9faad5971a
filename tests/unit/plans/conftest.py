"""Shared fixtures for the pricing-domain tests: the shipped catalog and Shanghai months."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from plans import Catalog, Period, load_catalog

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def september() -> Period:
    return Period(datetime(2026, 9, 1, tzinfo=SHANGHAI), datetime(2026, 10, 1, tzinfo=SHANGHAI))


@pytest.fixture
def october() -> Period:
    return Period(datetime(2026, 10, 1, tzinfo=SHANGHAI), datetime(2026, 11, 1, tzinfo=SHANGHAI))


@pytest.fixture
def november() -> Period:
    return Period(datetime(2026, 11, 1, tzinfo=SHANGHAI), datetime(2026, 12, 1, tzinfo=SHANGHAI))
