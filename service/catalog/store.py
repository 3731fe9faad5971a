"""Publishing plan versions and reading the catalog back.

A plan version is published once: its definition and fingerprint are stored and never change,
so what a subscription on it pays never changes either. Publishing the shipped ``catalog.toml``
again adds only new versions; a published version edited in the file is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import structlog

from plans.catalog import Catalog, PlanNotFoundError, PlanVersion, load_catalog
from service.db.tables import PlanVersionRow
from service.errors import Conflict, NotFound
from service.stripe_outbox import Command, enqueue

log = structlog.get_logger(__name__)


class CatalogConflict(Conflict):
    slug = "catalog-version-changed"
    title = "A published plan version cannot change"


@dataclass(frozen=True, slots=True)
class PublishResult:
    published: list[tuple[str, int]]
    unchanged: list[tuple[str, int]]


async def publish(catalog: Catalog) -> PublishResult:
    """Store every version not yet published; refuse any published version that differs."""
    existing = {
        (row["code"], row["version"]): row["fingerprint"]
        for row in await PlanVersionRow.select(
            PlanVersionRow.code, PlanVersionRow.version, PlanVersionRow.fingerprint
        )
    }
    published, unchanged = [], []
    for plan in catalog.plans:
        fingerprint = existing.get(plan.key)
        if fingerprint == plan.fingerprint:
            unchanged.append(plan.key)
            continue
        if fingerprint is not None:
            raise CatalogConflict(
                f"plan {plan.code!r} v{plan.version} is already published with other terms; "
                f"publish the change as v{_next_version(catalog, plan.code)} instead",
                plan=plan.code,
                version=plan.version,
            )
        inserted = await PlanVersionRow.raw(
            "INSERT INTO plan_versions (code, version, tier, fingerprint, definition)"
            " VALUES ({}, {}, {}, {}, {}::jsonb) ON CONFLICT (code, version) DO NOTHING"
            " RETURNING id",
            plan.code,
            plan.version,
            plan.tier,
            plan.fingerprint,
            msgspec.json.encode(plan).decode(),
        )
        if inserted:  # its Stripe product and prices
            await enqueue(None, Command.CATALOG_PLAN, {"code": plan.code, "version": plan.version})
        published.append(plan.key)
    if published:
        log.info("catalog_published", versions=[f"{c} v{v}" for c, v in published])
        _cache.clear()
    return PublishResult(published=published, unchanged=unchanged)


async def publish_shipped() -> PublishResult:
    return await publish(load_catalog())


def _next_version(catalog: Catalog, code: str) -> int:
    return max(plan.version for plan in catalog.versions(code)) + 1


class _CatalogCache:
    """Published versions never change, so a process keeps them; a miss re-reads the table."""

    def __init__(self) -> None:
        self.catalog: Catalog | None = None

    def clear(self) -> None:
        self.catalog = None


_cache = _CatalogCache()


async def current(*, refresh: bool = False) -> Catalog:
    if _cache.catalog is None or refresh:
        rows = (
            await PlanVersionRow.select(PlanVersionRow.definition)
            .order_by(PlanVersionRow.code)
            .order_by(PlanVersionRow.version)
        )
        plans = [
            msgspec.json.decode(_as_bytes(row["definition"]), type=PlanVersion) for row in rows
        ]
        _cache.catalog = Catalog(_in_shipped_order(plans))
    return _cache.catalog


async def plan_version(code: str, version: int | None = None) -> PlanVersion:
    """A plan version (the latest when ``version`` is None); NotFound names what exists."""
    for refresh in (False, True):
        catalog = await current(refresh=refresh)
        try:
            return catalog.latest(code) if version is None else catalog.get(code, version)
        except PlanNotFoundError as error:
            if refresh:
                raise NotFound(str(error), field="plan") from None
    raise AssertionError("unreachable")


def _as_bytes(value: object) -> bytes:
    return value.encode() if isinstance(value, str) else msgspec.json.encode(value)


_TIER_ORDER = {"basic": 0, "advanced": 1, "custom": 2}


def _in_shipped_order(plans: list[PlanVersion]) -> list[PlanVersion]:
    return sorted(plans, key=lambda p: (_TIER_ORDER.get(p.tier, 9), p.code, p.version))
