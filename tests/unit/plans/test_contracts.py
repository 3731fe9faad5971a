"""Contract terms: add-on choice and per-merchant overrides of any charge field."""

from __future__ import annotations

from decimal import Decimal

import pytest

from plans import (
    AddonNotAllowedError,
    Catalog,
    ContractOverrides,
    OverrideError,
    Period,
    UsageAggregate,
    rate,
    resolve_terms,
)

D = Decimal
CUSTOM_MONTH = {"orders": UsageAggregate(count=20_000, quantity=D(20_000), gmv_minor=35_000_000)}


def amounts(draft: object) -> dict[str, int]:
    return {line.charge_code: line.amount_minor for line in draft.lines}  # type: ignore[attr-defined]


def test_custom_contract_overrides_prices_rates_and_thresholds(
    catalog: Catalog, october: Period, november: Period
) -> None:
    overrides = ContractOverrides(
        charges={
            "monthly_fee": {"amount_minor": 150_000},
            "orders": {"unit_price": "0.15", "included_units": 5_000},
            "gmv_fee": {"rate": "0.0025", "threshold_minor": 20_000_000},
            "support_hours": {"unit_price": "45.00"},
        }
    )
    usage = {**CUSTOM_MONTH, "support_hours": UsageAggregate(count=3, quantity=D("6.5"))}
    draft = rate(
        catalog.latest("custom"),
        overrides=overrides,
        usage_period=october,
        fee_period=november,
        aggregates=usage,
    )
    assert amounts(draft) == {
        "monthly_fee": 150_000,  # ¥1,500.00 negotiated fee
        "orders": 225_000,  # (20,000 − 5,000) × ¥0.15 = ¥2,250.00
        "gmv_fee": 37_500,  # (¥350,000 − ¥200,000) × 0.25% = ¥375.00
        "support_hours": 29_250,  # 6.5 h × ¥45 = ¥292.50
    }
    assert draft.total_minor == 150_000 + 225_000 + 37_500 + 29_250


def test_overrides_reach_addon_prices_and_minimum_commitments(
    catalog: Catalog, october: Period, november: Period
) -> None:
    draft = rate(
        catalog.latest("custom"),
        addons=["tooling_bundle"],
        overrides={
            "tooling_bundle": {"amount_minor": 80_000},
            "minimum_commitment": {"amount_minor": 1_000_000},
        },
        usage_period=october,
        fee_period=november,
        aggregates=CUSTOM_MONTH,
    )
    lines = amounts(draft)
    assert lines["tooling_bundle"] == 80_000  # ¥800 instead of the catalog's ¥1,000
    # usage ¥4,000 (orders) + ¥750 (GMV) + ¥0 (hours) = ¥4,750 against ¥10,000: true-up ¥5,250
    assert lines["minimum_commitment"] == 525_000


def test_overrides_never_change_the_plan_version(catalog: Catalog) -> None:
    plan = catalog.latest("custom")
    terms = resolve_terms(plan, overrides={"orders": {"unit_price": "0.10"}})
    orders_charge = next(c for c in terms.charges if c.code == "orders")
    assert orders_charge.unit_price == D("0.10")  # type: ignore[union-attr]
    assert plan.charge("orders").unit_price == D("0.20")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"order": {"unit_price": "0.1"}}, "charge 'order', which plan 'custom' v1 does not have"),
        ({"orders": {"price": "0.1"}}, "'price' is not a field of it"),
        ({"orders": {"metric": "support_hours"}}, "'metric' cannot be overridden"),
        ({"orders": {"code": "x"}}, "'code' cannot be overridden"),
        ({"orders": {"unit_price": 0.1}}, "float"),
        ({"orders": {"unit_price": "-0.1"}}, "unit_price must not be negative"),
        ({"gmv_fee": {"rate": "2"}}, "rate must be a fraction"),
        ({"monthly_fee": {"amount_minor": "1200"}}, "Expected `int`"),
        ({"fast_response": {"rate": "0.3"}}, "does not have"),  # not offered on custom
        ({"tooling_bundle": {"amount": 1}}, "'amount' is not a field"),  # offered, not chosen
    ],
)
def test_overrides_must_name_real_charges_and_fields(
    catalog: Catalog, overrides: dict[str, dict[str, object]], message: str
) -> None:
    with pytest.raises(OverrideError, match=message):
        resolve_terms(catalog.latest("custom"), overrides=overrides)


def test_only_negotiable_plans_take_overrides(catalog: Catalog) -> None:
    with pytest.raises(OverrideError, match="'basic' v1 does not take contract overrides"):
        resolve_terms(catalog.latest("basic"), overrides={"orders": {"unit_price": "0.1"}})
    # an empty override set is no override
    resolve_terms(catalog.latest("basic"), overrides=ContractOverrides())


def test_addons_must_be_offered_and_compatible(catalog: Catalog) -> None:
    with pytest.raises(
        AddonNotAllowedError, match="'fast_response' is not offered on plan 'advanced'"
    ):
        resolve_terms(catalog.latest("advanced"), ["fast_response"])
    with pytest.raises(AddonNotAllowedError, match="exclude each other"):
        resolve_terms(catalog.latest("basic"), ["standard_response", "fast_response"])
    with pytest.raises(AddonNotAllowedError, match="exclude each other"):
        resolve_terms(catalog.latest("basic"), ["tooling_bundle", "bring_your_own_system"])
    with pytest.raises(AddonNotAllowedError, match="more than once"):
        resolve_terms(catalog.latest("basic"), ["complexity", "complexity"])


def test_terms_rate_charges_in_phase_order(catalog: Catalog) -> None:
    terms = resolve_terms(
        catalog.latest("custom"), ["bring_your_own_system", "complexity", "emergency_response"]
    )
    assert [charge.code for charge in terms.charges] == [
        "monthly_fee",
        "emergency_response",
        "orders",
        "gmv_fee",
        "support_hours",
        "complexity",
        "minimum_commitment",
        "bring_your_own_system",
    ]
