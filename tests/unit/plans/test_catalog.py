"""The shipped catalog, version lookups, and bad catalogs that must fail to load clearly."""

from __future__ import annotations

from decimal import Decimal
from importlib import resources
from pathlib import Path

import msgspec
import pytest

from plans import (
    Catalog,
    CatalogError,
    PlanNotFoundError,
    UsageAggregate,
    load_catalog,
    parse_catalog,
    rate,
)
from plans.charges import (
    FlatAddon,
    FlatFee,
    Percentage,
    PercentageDiscount,
    PerHour,
    PerUnit,
    Surcharge,
)
from plans.periods import Period
from plans.sla import CsatBelow, FaultUnresolvedOver

D = Decimal


def test_shipped_plans_carry_the_design_defaults(catalog: Catalog) -> None:
    assert catalog.codes() == ("basic", "advanced", "custom")
    basic, advanced, custom = catalog.latest_plans()
    assert basic.charges == (
        FlatFee(code="monthly_fee", description="Basic monthly service fee", amount_minor=9_900),
        PerUnit(
            code="orders", description="Handled orders", metric="orders",
            unit_price=D("0.50"), included_units=D(3000),
        ),
    )  # fmt: skip
    assert advanced.charge("monthly_fee") == FlatFee(
        code="monthly_fee", description="Advanced monthly service fee", amount_minor=30_000
    )
    assert advanced.charge("orders") == PerUnit(
        code="orders", description="Handled orders", metric="orders",
        unit_price=D("0.30"), included_units=D(15000),
    )  # fmt: skip
    assert custom.charge("monthly_fee").amount_minor == 120_000  # type: ignore[union-attr]
    assert custom.charge("gmv_fee") == Percentage(
        code="gmv_fee", description="GMV fee", metric="orders", rate=D("0.003"),
        threshold_minor=10_000_000,
    )  # fmt: skip
    assert custom.charge("orders").unit_price == D("0.20")  # type: ignore[union-attr]
    assert isinstance(custom.charge("support_hours"), PerHour)
    assert custom.charge("support_hours").unit_price == D("30.00")  # type: ignore[union-attr]
    assert custom.allows_overrides
    assert not basic.allows_overrides
    assert not advanced.allows_overrides


def test_shipped_plan_settings(catalog: Catalog) -> None:
    for plan in catalog.latest_plans():
        assert (plan.version, plan.currency, plan.billing_period) == (1, "CNY", "calendar_month")
        assert plan.sla_policy is not None
    assert catalog.latest("basic").trial_days == 14
    assert catalog.latest("basic").proration_invoicing == "next_invoice"
    assert catalog.latest("advanced").is_proration_invoiced_immediately


def test_shipped_addons(catalog: Catalog) -> None:
    basic = catalog.latest("basic")
    charges = {addon.code: addon.charge for addon in basic.addons}
    assert charges["standard_response"].rate == D("0.15")  # type: ignore[union-attr]
    assert charges["fast_response"] == Surcharge(
        code="fast_response", description="Fast response SLA (first response ≤10 min)",
        rate=D("0.40"),
    )  # fmt: skip
    assert isinstance(charges["emergency_response"], FlatAddon)
    assert charges["emergency_response"].amount_minor == 500_000  # type: ignore[union-attr]
    assert charges["complexity"].rate == D("0.25")  # type: ignore[union-attr]
    assert charges["tooling_bundle"].amount_minor == 100_000  # type: ignore[union-attr]
    byo = charges["bring_your_own_system"]
    assert isinstance(byo, PercentageDiscount)
    assert (byo.rate, byo.applies_to) == (D("0.20"), ("fee",))
    advanced_addons = {addon.code for addon in catalog.latest("advanced").addons}
    assert "fast_response" not in advanced_addons  # advanced already answers within 10 min
    assert basic.addon("fast_response").exclusive_group == "response_time"
    with pytest.raises(KeyError, match="not offered"):
        catalog.latest("advanced").addon("fast_response")


def test_shipped_sla_policy(catalog: Catalog) -> None:
    policy = catalog.latest("basic").sla_policy
    assert policy is not None
    fault, csat = policy.rules
    assert isinstance(fault, FaultUnresolvedOver)
    assert (fault.hours, fault.credit_rate) == (D(24), D("1.00"))
    assert isinstance(csat, CsatBelow)
    assert (csat.threshold, csat.credit_rate) == (D("0.90"), D("0.10"))


def test_lookups_by_code_and_version(catalog: Catalog) -> None:
    assert catalog.get("advanced", 1) is catalog.latest("advanced")
    assert catalog.versions("custom") == (catalog.latest("custom"),)
    with pytest.raises(PlanNotFoundError, match=r"no plan 'basic' v9.*versions: v1"):
        catalog.get("basic", 9)
    with pytest.raises(PlanNotFoundError, match="no plan 'gold'"):
        catalog.latest("gold")


SHIPPED = resources.files("plans").joinpath("catalog.toml").read_text(encoding="utf-8")
BASIC_V2 = """
[[plans]]
code = "basic"
version = 2
name = "Basic"
tier = "basic"
currency = "CNY"
billing_period = "calendar_month"
proration_invoicing = "next_invoice"
addons = { fast_response = 1 }

[[plans.charges]]
code = "monthly_fee"
model = "flat_fee"
description = "Basic monthly service fee"
amount_minor = 12_900

[[plans.charges]]
code = "orders"
model = "per_unit"
description = "Handled orders"
metric = "orders"
included_units = 2_000
unit_price = "0.60"
"""


def test_publishing_a_new_version_leaves_the_old_one_unchanged(
    catalog: Catalog, october: Period, november: Period
) -> None:
    republished = parse_catalog(SHIPPED + BASIC_V2)
    assert republished.latest("basic").version == 2
    assert [plan.version for plan in republished.versions("basic")] == [1, 2]
    old = republished.get("basic", 1)
    assert old == catalog.get("basic", 1)
    assert old.fingerprint == catalog.get("basic", 1).fingerprint
    usage = {"orders": UsageAggregate(count=3_600, quantity=D(3_600))}
    on_v1 = rate(old, usage_period=october, fee_period=november, aggregates=usage)
    on_v2 = rate(
        republished.latest("basic"), usage_period=october, fee_period=november, aggregates=usage
    )
    # v1: ¥99 + 600 × ¥0.50 = ¥399.00; v2: ¥129 + 1,600 × ¥0.60 = ¥1,089.00
    assert on_v1.total_minor == 39_900
    assert on_v2.total_minor == 108_900


def test_fingerprint_changes_when_a_price_changes(catalog: Catalog) -> None:
    edited = parse_catalog(SHIPPED.replace('unit_price = "0.50"', 'unit_price = "0.55"'))
    assert edited.get("basic", 1).fingerprint != catalog.get("basic", 1).fingerprint
    assert edited.get("advanced", 1).fingerprint == catalog.get("advanced", 1).fingerprint


PUBLISHED_FINGERPRINTS = {
    ("basic", 1): "f3d63656737065fb667f0a3322a158788262bcebe717aba54565cb7e03b19ba2",
    ("advanced", 1): "c9b8f5f96e9ed58c641ca3fa85c8c42bfc2ec79fa87838e5ecec84c5206dcab3",
    ("custom", 1): "9ae1dfb1b9f89c57c8072f94e487d7efd395f7ec3ea42426dfe3953a15bcb803",
}
"""The fingerprints the shipped versions were published with: installations hold them, and a
version whose fingerprint moved is refused at start as edited."""


def test_published_versions_keep_their_fingerprints_as_plan_fields_are_added(
    catalog: Catalog,
) -> None:
    assert {plan.key: plan.fingerprint for plan in catalog.plans} == PUBLISHED_FINGERPRINTS
    assert all(plan.days_until_due == 14 for plan in catalog.plans)


def test_payment_terms_of_a_plan_count_in_its_fingerprint(catalog: Catalog) -> None:
    net_30 = parse_catalog(
        SHIPPED.replace(
            'code = "custom"\nversion = 1\n', 'code = "custom"\nversion = 1\ndays_until_due = 30\n'
        )
    )
    assert net_30.get("custom", 1).days_until_due == 30
    assert net_30.get("custom", 1).fingerprint != catalog.get("custom", 1).fingerprint
    with pytest.raises(CatalogError, match="days_until_due"):
        parse_catalog(
            SHIPPED.replace(
                'code = "basic"\nversion = 1\n', 'code = "basic"\nversion = 1\ndays_until_due = 0\n'
            )
        )


def test_load_catalog_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(SHIPPED + BASIC_V2, encoding="utf-8")
    assert load_catalog(path).latest("basic").version == 2


def test_plans_serialise_to_json_for_the_api(catalog: Catalog) -> None:
    encoded = msgspec.json.encode(catalog.latest("custom"))
    decoded = msgspec.json.decode(encoded)
    assert decoded["charges"][2]["model"] == "percentage"
    assert decoded["charges"][2]["rate"] == "0.003"
    assert decoded["sla_policy"]["rules"][0]["condition"] == "fault_unresolved_over"


# -- bad catalogs -----------------------------------------------------------------------------

MINIMAL = """
[[plans]]
code = "basic"
version = 1
name = "Basic"
tier = "basic"
currency = "CNY"
billing_period = "calendar_month"
proration_invoicing = "next_invoice"
sla_policy = { code = "standard", version = 1 }
addons = { fast_response = 1 }

[[plans.charges]]
code = "monthly_fee"
model = "flat_fee"
description = "Fee"
amount_minor = 9_900

[[plans.charges]]
code = "orders"
model = "per_unit"
description = "Orders"
metric = "orders"
unit_price = "0.50"
included_units = 3_000

[[addons]]
code = "fast_response"
version = 1
name = "Fast"
currency = "CNY"
model = "surcharge"
description = "Fast response"
rate = "0.40"

[[sla_policies]]
code = "standard"
version = 1

[[sla_policies.rules]]
code = "csat"
condition = "csat_below"
description = "CSAT"
threshold = "0.90"
credit_rate = "0.10"
"""


def test_the_minimal_catalog_is_valid() -> None:
    assert parse_catalog(MINIMAL).latest("basic").charge("orders").unit_price == D("0.50")  # type: ignore[union-attr]


GRADUATED_OUT_OF_ORDER = """
[[plans.charges]]
code = "extra"
model = "graduated"
description = "Extra"
metric = "orders"
tiers = [{ up_to = 100, unit_price = "1" }, { up_to = 50, unit_price = "1" }, { unit_price = "1" }]
"""


@pytest.mark.parametrize(
    ("old", "new", "where", "field", "problem"),
    [
        ('unit_price = "0.50"', "unit_price = 0.50", "plan 'basic' v1",
         "charges[1] ('orders').unit_price", "is the float 0.5"),
        ('unit_price = "0.50"', 'unit_price = "-0.50"', "plan 'basic' v1",
         "charges[1] ('orders').unit_price", "must not be negative"),
        ('unit_price = "0.50"', 'unit_price = "half"', "plan 'basic' v1",
         "charges[1] ('orders').unit_price", "Invalid decimal"),
        ('model = "per_unit"', 'model = "per_order"', "plan 'basic' v1",
         "charges[1] ('orders').model", "Invalid value 'per_order'"),
        ('metric = "orders"', 'metric = "visits"', "plan 'basic' v1",
         "charges[1] ('orders').metric", "Invalid enum value 'visits'"),
        ('unit_price = "0.50"', 'unit_prise = "0.50"', "plan 'basic' v1",
         "charges[1] ('orders').unit_prise", "is not a known field"),
        ('tier = "basic"\n', "", "plan 'basic' v1", "tier", "is required"),
        ('tier = "basic"', 'tier = "gold"', "plan 'basic' v1", "tier", "Invalid enum value 'gold'"),
        ('currency = "CNY"\nbilling', 'currency = "RMB"\nbilling', "plan 'basic' v1",
         "currency", "unknown currency 'RMB'"),
        ('billing_period = "calendar_month"', 'billing_period = "weekly"', "plan 'basic' v1",
         "billing_period", "Invalid enum value 'weekly'"),
        ('proration_invoicing = "next_invoice"', 'proration_invoicing = "later"',
         "plan 'basic' v1", "proration_invoicing", "Invalid enum value 'later'"),
        ("version = 1\nname", "version = 0\nname", "plan 'basic' v0", "version", "1 or more"),
        ('code = "orders"', 'code = "monthly_fee"', "plan 'basic' v1",
         "charges[1] ('monthly_fee').code", "used by another charge"),
        ('code = "orders"', 'code = "Orders!"', "plan 'basic' v1",
         "charges[1] ('Orders!').code", "lowercase"),
        ("addons = { fast_response = 1 }", "addons = { fast_response = 2 }", "plan 'basic' v1",
         "addons.fast_response", "add-on 'fast_response' v2, which is not defined"),
        ('sla_policy = { code = "standard", version = 1 }',
         'sla_policy = { code = "premium", version = 1 }', "plan 'basic' v1", "sla_policy",
         "'premium' v1, which is not defined"),
        ("amount_minor = 9_900", 'amount_minor = "99.00"', "plan 'basic' v1",
         "charges[0] ('monthly_fee').amount_minor", "Expected `int`, got `str`"),
        ('name = "Fast"\ncurrency = "CNY"', 'name = "Fast"\ncurrency = "USD"', "plan 'basic' v1",
         "addons.fast_response", "priced in USD"),
        ('model = "surcharge"', 'model = "per_unit"', "add-on 'fast_response' v1", "model",
         "Invalid value 'per_unit'"),
        ('rate = "0.40"', 'rate = "-0.40"', "add-on 'fast_response' v1", "rate",
         "must be a fraction"),
        ('threshold = "0.90"', 'threshold = "90"', "sla policy 'standard' v1",
         "rules[0].threshold", "between 0 and 1"),
        ('[[addons]]', GRADUATED_OUT_OF_ORDER + "\n[[addons]]", "plan 'basic' v1",
         "charges[2] ('extra').tiers[1].up_to", "must be greater than 100"),
    ],
)  # fmt: skip
def test_bad_catalog_names_plan_field_and_problem(
    old: str, new: str, where: str, field: str, problem: str
) -> None:
    assert old in MINIMAL
    with pytest.raises(CatalogError) as raised:
        parse_catalog(MINIMAL.replace(old, new, 1))
    error = raised.value
    assert (error.where, error.field) == (where, field), str(error)
    assert problem in error.problem, str(error)
    assert str(error).startswith(f"{where}, field {field}: ")


def test_a_version_published_twice_is_refused() -> None:
    plan = MINIMAL[: MINIMAL.index("[[addons]]")]
    with pytest.raises(CatalogError, match="plan 'basic' v1, field version: is published twice"):
        parse_catalog(MINIMAL + plan)


def test_a_plan_without_charges_is_refused() -> None:
    with pytest.raises(CatalogError, match="plan 'lite' v1, field charges: must list at least one"):
        parse_catalog(
            '[[plans]]\ncode = "lite"\nversion = 1\nname = "Lite"\ntier = "basic"\n'
            'currency = "CNY"\nbilling_period = "calendar_month"\n'
            'proration_invoicing = "immediately"\ncharges = []\n'
        )


def test_invalid_toml_and_unknown_sections_are_refused() -> None:
    with pytest.raises(CatalogError, match="not valid TOML"):
        parse_catalog("[[plans]\n")
    with pytest.raises(CatalogError, match="field discounts: is not a known field"):
        parse_catalog(MINIMAL + "\n[[discounts]]\ncode = 'x'\n")
