"""Contract terms: a plan version plus the merchant's chosen add-ons and negotiated overrides.

An override names a charge (a plan charge or an add-on the plan offers) by its code, and a
field of that charge by name, e.g. ``{"orders": {"unit_price": "0.18"}, "gmv_fee": {"rate":
"0.0025", "threshold_minor": 20000000}}``. Any price, rate, allowance or threshold can be
overridden; the charge's identity (code, model, metric) cannot. Values use the catalog's
units and are validated exactly like catalog entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from plans.catalog import Addon, PlanVersion
from plans.charges import Charge
from plans.sla import SlaPolicy

__all__ = [
    "AddonNotAllowedError",
    "ContractOverrides",
    "OverrideError",
    "Terms",
    "resolve_terms",
]

_FIXED_FIELDS: Final = frozenset({"code", "metric"})


class OverrideError(ValueError):
    """A contract override names no real charge or field, or gives an invalid value."""


class AddonNotAllowedError(ValueError):
    """An add-on the plan does not offer, or two that exclude each other."""


class ContractOverrides(msgspec.Struct, frozen=True, kw_only=True):
    """Per-merchant prices: ``charges[charge_code][field_name] = value`` (catalog units)."""

    charges: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not any(self.charges.values())


class Terms(msgspec.Struct, frozen=True, kw_only=True):
    """What a subscription is rated on: its plan version with add-ons and overrides applied.

    ``charges`` holds the plan's charges then the chosen add-ons' charges, overrides applied,
    in rating order (by phase, then catalog order).
    """

    plan: PlanVersion
    addons: tuple[Addon, ...]
    charges: tuple[Charge, ...]
    sla_policy: SlaPolicy | None

    @property
    def currency(self) -> str:
        return self.plan.currency


def resolve_terms(
    plan: PlanVersion,
    addons: Sequence[str] = (),
    overrides: ContractOverrides | Mapping[str, Mapping[str, Any]] | None = None,
) -> Terms:
    """Check the add-ons and overrides against the plan and apply them."""
    chosen = _choose_addons(plan, addons)
    override_map = _override_map(overrides)
    if override_map and not plan.allows_overrides:
        raise OverrideError(
            f"plan {plan.code!r} v{plan.version} does not take contract overrides "
            f"(only negotiated plans do)"
        )
    known: dict[str, Charge] = {charge.code: charge for charge in plan.charges}
    known.update({addon.code: addon.charge for addon in plan.addons})
    for code in override_map:
        if code not in known:
            raise OverrideError(
                f"override names charge {code!r}, which plan {plan.code!r} v{plan.version} "
                f"does not have (charges and add-ons: {', '.join(known)})"
            )
    charges: list[Charge] = [
        _apply(charge, override_map.get(charge.code)) for charge in plan.charges
    ]
    addon_terms: list[Addon] = []
    for addon in chosen:
        charge = _apply(addon.charge, override_map.get(addon.code))
        charges.append(charge)
        addon_terms.append(msgspec.structs.replace(addon, charge=charge))
    for code, fields in override_map.items():
        if code not in {charge.code for charge in charges}:
            _apply(known[code], fields)  # validate overrides of add-ons not (yet) chosen
    charges.sort(key=lambda charge: charge.phase)
    return Terms(
        plan=plan, addons=tuple(addon_terms), charges=tuple(charges), sla_policy=plan.sla_policy
    )


def _override_map(
    overrides: ContractOverrides | Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, Mapping[str, Any]]:
    if overrides is None:
        return {}
    raw = overrides.charges if isinstance(overrides, ContractOverrides) else overrides
    return {code: fields for code, fields in raw.items() if fields}


def _choose_addons(plan: PlanVersion, codes: Sequence[str]) -> list[Addon]:
    if len(set(codes)) != len(codes):
        raise AddonNotAllowedError(f"add-ons listed more than once: {sorted(codes)}")
    chosen: list[Addon] = []
    groups: dict[str, str] = {}
    for code in codes:
        try:
            addon = plan.addon(code)
        except KeyError as error:
            raise AddonNotAllowedError(error.args[0]) from None
        group = addon.exclusive_group
        if group is not None:
            if group in groups:
                raise AddonNotAllowedError(
                    f"add-ons {groups[group]!r} and {code!r} exclude each other "
                    f"(both in group {group!r})"
                )
            groups[group] = code
        chosen.append(addon)
    return chosen


def _apply(charge: Charge, fields: Mapping[str, Any] | None) -> Charge:
    if not fields:
        return charge
    names = set(charge.__struct_fields__) - _FIXED_FIELDS
    for name, value in fields.items():
        if name not in names:
            reason = "cannot be overridden" if name in _FIXED_FIELDS else "is not a field of it"
            raise OverrideError(
                f"override of charge {charge.code!r} ({type(charge).__name__}): "
                f"{name!r} {reason}; fields: {', '.join(sorted(names))}"
            )
        if isinstance(value, float):
            raise OverrideError(
                f"override of charge {charge.code!r}: {name} is the float {value!r}; "
                'write money and rates as strings like "0.30"'
            )
    merged = {**msgspec.to_builtins(charge), **fields}
    try:
        result: Charge = msgspec.convert(merged, type(charge))
    except msgspec.ValidationError as error:
        raise OverrideError(f"override of charge {charge.code!r}: {error}") from None
    return result
