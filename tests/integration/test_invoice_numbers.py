"""Invoice numbers are unique across the whole ledger (a prefix per merchant), gapless per
merchant and, for period invoices, in period order even when a test clock jumps months and
passes run side by side; numbers given before prefixes stay, and the count goes on."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from httpx import AsyncClient
from piccolo.apps.migrations.commands.forwards import run_forwards

from service.db import engine as db_engine
from service.db.engine import Database
from service.db.migrate import migrate
from service.invoicing import close, numbering
from tests import citus_cluster
from tests.integration.conftest import Tenant, signup_tenant
from tests.integration.invoicing_helpers import (
    NUMBER,
    advance,
    close_pass,
    invoices_of,
    new_clock,
    numbered,
)


async def test_four_merchants_first_invoices_have_four_different_numbers(
    client: AsyncClient, operator: Tenant
) -> None:
    clock = await new_clock(client, operator, "2026-03-01T00:00:00+08:00")
    tenants = [
        (await signup_tenant(client, operator, test_clock_id=clock, name=f"Shop {n}"))[0]
        for n in range(4)
    ]
    await advance(client, operator, clock, "2026-04-03T00:00:00+08:00")
    firsts, prefixes = [], []
    for tenant in tenants:
        await close_pass(tenant.merchant_id)
        invoices = await invoices_of(client, tenant)
        prefix, sequence = numbered(invoices)
        assert sequence == [1, 2]
        firsts.append(invoices[0]["number"])
        prefixes.append(prefix)
    assert len(set(firsts)) == len(set(prefixes)) == 4, firsts
    repeated = await db_engine.current().pool.fetch(
        "SELECT number FROM invoices WHERE number ~ '^KB-[0-9A-Z]*[A-Z][0-9A-Z]*-'"
        " GROUP BY number HAVING count(*) > 1"
    )
    assert repeated == []


async def test_a_clock_jump_numbers_period_invoices_in_period_order_with_passes_side_by_side(
    client: AsyncClient, operator: Tenant
) -> None:
    clock = await new_clock(client, operator, "2025-01-01T00:00:00+08:00")
    tenant, _ = await signup_tenant(client, operator, test_clock_id=clock)
    await advance(client, operator, clock, "2026-01-03T00:00:00+08:00")  # twelve months ended

    async def one_pass() -> close.CloseSummary:
        return await close.run_pass(
            system_now=datetime.now(UTC),
            grace=timedelta(hours=48),
            tax_rate=Decimal(0),
            merchant_id=tenant.merchant_id,
            concurrency=4,
        )

    await asyncio.gather(*(one_pass() for _ in range(3)))
    await close_pass(tenant.merchant_id)  # whatever waited for an earlier period
    invoices = await invoices_of(client, tenant)
    _, sequence = numbered(invoices)
    assert sorted(sequence) == list(range(1, 14))  # gapless: the first fee + twelve months
    periods = sorted(
        (i for i in invoices if i["kind"] == "period"), key=lambda i: i["period_start"]
    )
    assert len(periods) == 12
    assert [int(i["number"].rsplit("-", 1)[1]) for i in periods] == list(range(2, 14))


def test_prefixes_are_drawn_without_ambiguous_letters_and_never_read_as_a_year() -> None:
    drawn = [numbering.draw_prefix() for _ in range(2000)]
    assert all(re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}", p) and re.search("[A-Z]", p) for p in drawn)
    assert len(numbering.draw_prefix(6)) == 6
    assert Counter(drawn).most_common(1)[0][1] < 10  # random, not a counter


async def test_the_database_refuses_a_prefix_twice_or_without_a_letter(
    database: Database,
) -> None:
    insert = "INSERT INTO invoice_number_prefixes (merchant_id, prefix) VALUES ($1, $2)"
    async with database.pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        try:
            await connection.execute(insert, uuid.uuid4(), "ZZZZ9")
            with pytest.raises(asyncpg.UniqueViolationError):
                await connection.execute(insert, uuid.uuid4(), "ZZZZ9")
        finally:
            await transaction.rollback()
        for bad in ("2026", "AB1", "abcd", "ABCO"):
            with pytest.raises(asyncpg.CheckViolationError):
                await connection.execute(insert, uuid.uuid4(), bad)


async def test_numbers_given_before_prefixes_stay_and_the_count_goes_on(
    database: Database,
) -> None:
    name = f"numbers_{uuid.uuid4().hex[:8]}"
    dsn = db_engine._with_database(database.dsn, name)
    await citus_cluster.prepare_database(dsn)
    previous = db_engine.current()
    other = db_engine.connect(dsn)
    merchant_id = uuid.uuid4()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # Piccolo prints its progress
            before = await run_forwards(
                app_name="billing", migration_id="2026-12-04T00:00:00:000000", fake=False
            )
        assert before.success, before.message
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(
                "INSERT INTO merchants (id, name, contact_email) VALUES ($1, 'Old shop', '')",
                merchant_id,
            )
            # Three numbers in 2025, two in 2026: KB-2025-000001…3, KB-2026-000001…2.
            await connection.execute(
                "INSERT INTO invoice_number_counters (merchant_id, year, last_number)"
                " VALUES ($1, 2025, 3), ($1, 2026, 2)",
                merchant_id,
            )
            # The prefixes' migration and those after it (then the tables distributed, on Citus).
            assert await migrate(other, shard_count=citus_cluster.SHARD_COUNT)
            assert (
                await connection.fetchval(
                    "SELECT last_number FROM invoice_number_sequences WHERE merchant_id = $1",
                    merchant_id,
                )
                == 5
            )
            assert (
                await connection.fetchval("SELECT to_regclass('invoice_number_counters')") is None
            )
        finally:
            await connection.close()
        await other.start_pool(min_size=1, max_size=2)
        async with other.engine.transaction():
            number = await numbering.next_number(merchant_id)
        match = NUMBER.match(number)
        assert match is not None, number
        assert match.group(2) == "000006"
    finally:
        await other.close()
        db_engine.rebind(previous)
        await citus_cluster.drop_database(dsn)


async def test_every_prefix_belongs_to_a_merchant(client: AsyncClient, operator: Tenant) -> None:
    # The prefixes are a reference table with no foreign key (Citus): the code draws one only
    # for a merchant it is numbering, and nothing deletes merchants. Checked over the ledger.
    clock = await new_clock(client, operator, "2026-05-01T00:00:00+08:00")
    tenant, _ = await signup_tenant(client, operator, test_clock_id=clock)
    await close_pass(tenant.merchant_id)
    pool = db_engine.current().pool
    assert await pool.fetchval(
        "SELECT count(*) FROM invoice_number_prefixes WHERE merchant_id = $1", tenant.merchant_id
    )
    holders = [row["merchant_id"] for row in await pool.fetch(
        "SELECT merchant_id FROM invoice_number_prefixes")]  # fmt: skip
    merchants = await pool.fetch("SELECT id FROM merchants WHERE id = ANY($1::uuid[])", holders)
    assert {row["id"] for row in merchants} == set(holders)


async def test_a_drawn_prefix_another_merchant_holds_is_drawn_again(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder, drawer = uuid.uuid4(), uuid.uuid4()
    draws = iter(["QQQQ", "QQQR", "QQQS", "QQQT"])
    monkeypatch.setattr(numbering, "draw_prefix", lambda length=4: next(draws))
    async with database.engine.transaction() as transaction:
        await transaction.connection.execute(
            "INSERT INTO invoice_number_prefixes (merchant_id, prefix) VALUES ($1, 'QQQQ')", holder
        )
        assert await numbering.prefix_of(drawer) == "QQQR"
        assert await numbering.prefix_of(drawer) == "QQQR"  # kept, not drawn again
        await transaction.rollback()
