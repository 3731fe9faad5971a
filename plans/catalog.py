"""The catalog: versioned plans, their add-ons and SLA policies, and the loader of catalog.toml.

Plans are looked up by ``(code, version)``: a subscription keeps the version it signed up to,
and each plan version carries resolved copies of the add-on and SLA policy versions it pins,
so nothing published later changes what it pays. A catalog that does not validate fails to
load with a `CatalogError` naming the plan (or add-on, or policy), the field and the problem.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from plans.charges import Charge, FlatAddon, PercentageDiscount, Surcharge
from plans.money import UnknownCurrencyError, exponent
from plans.periods import BillingPeriodKind
from plans.sla import SlaPolicy

__all__ = [
    "Addon",
    "AddonCharge",
    "Catalog",
    "CatalogError",
    "PlanNotFoundError",
    "PlanTier",
    "PlanVersion",
    "ProrationInvoicing",
    "load_catalog",
    "parse_catalog",
]

PlanTier = Literal["basic", "advanced", "custom"]
ProrationInvoicing = Literal["immediately", "next_invoice"]
AddonCharge = Surcharge | FlatAddon | PercentageDiscount

_CODE: Final = re.compile(r"^[a-z][a-z0-9_]*$")

DEFAULT_DAYS_UNTIL_DUE: Final = 14
"""Days a sent invoice is due after it is issued, unless the plan (or a contract) says."""

_TERMS_ADDED_LATER: Final = {"days_until_due": DEFAULT_DAYS_UNTIL_DUE}
"""Plan fields added after versions were published, with their defaults: a field at its
default is left out of the fingerprint, so those versions keep the one they were published
with (and are not refused as edited)."""


class CatalogError(ValueError):
    """The catalog is invalid: ``where`` (which plan), ``field`` and ``problem`` say how."""

    def __init__(self, where: str, field: str, problem: str) -> None:
        super().__init__(f"{where}, field {field}: {problem}")
        self.where = where
        self.field = field
        self.problem = problem


class PlanNotFoundError(LookupError):
    """No plan (or no such version of it) in the catalog."""


class Addon(msgspec.Struct, frozen=True, kw_only=True):
    """An optional extra a plan offers; its charge's code is the add-on's code."""

    code: str
    version: int
    name: str
    currency: str
    charge: AddonCharge
    exclusive_group: str | None = None


class PlanVersion(msgspec.Struct, frozen=True, kw_only=True):
    """One published, immutable version of a plan: everything needed to rate it."""

    code: str
    version: int
    name: str
    tier: PlanTier
    description: str
    currency: str
    billing_period: BillingPeriodKind
    proration_invoicing: ProrationInvoicing
    trial_days: int
    allows_overrides: bool
    charges: tuple[Charge, ...]
    addons: tuple[Addon, ...] = ()
    sla_policy: SlaPolicy | None = None
    days_until_due: int = DEFAULT_DAYS_UNTIL_DUE
    """Days an invoice sent to the merchant (no way to pay saved yet) is due after it is
    issued; a contract may set its own."""

    @property
    def key(self) -> tuple[str, int]:
        return (self.code, self.version)

    @property
    def is_proration_invoiced_immediately(self) -> bool:
        return self.proration_invoicing == "immediately"

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the version's canonical JSON: store it, and an edited version shows.
        Fields added later count only when they differ from their default (see
        ``_TERMS_ADDED_LATER``)."""
        canonical: dict[str, Any] = msgspec.to_builtins(self, order="sorted")
        for name, default in _TERMS_ADDED_LATER.items():
            if canonical.get(name) == default:
                del canonical[name]
        return hashlib.sha256(msgspec.json.encode(canonical, order="sorted")).hexdigest()

    def charge(self, code: str) -> Charge:
        for charge in self.charges:
            if charge.code == code:
                return charge
        raise KeyError(f"plan {self.code!r} v{self.version} has no charge {code!r}")

    def addon(self, code: str) -> Addon:
        for addon in self.addons:
            if addon.code == code:
                return addon
        offered = ", ".join(addon.code for addon in self.addons) or "none"
        raise KeyError(
            f"add-on {code!r} is not offered on plan {self.code!r} v{self.version} "
            f"(offered: {offered})"
        )


class Catalog:
    """Every published version of every plan, add-on and SLA policy."""

    __slots__ = ("_by_code", "_by_key", "addons", "plans", "sla_policies")

    def __init__(
        self,
        plans: Iterable[PlanVersion],
        addons: Iterable[Addon] = (),
        sla_policies: Iterable[SlaPolicy] = (),
    ) -> None:
        self.plans: tuple[PlanVersion, ...] = tuple(plans)
        self.addons: tuple[Addon, ...] = tuple(addons)
        self.sla_policies: tuple[SlaPolicy, ...] = tuple(sla_policies)
        self._by_key: dict[tuple[str, int], PlanVersion] = {}
        self._by_code: dict[str, list[PlanVersion]] = {}
        for plan in self.plans:
            if plan.key in self._by_key:
                raise CatalogError(
                    f"plan {plan.code!r} v{plan.version}", "version", "is published twice"
                )
            self._by_key[plan.key] = plan
            self._by_code.setdefault(plan.code, []).append(plan)
        for versions in self._by_code.values():
            versions.sort(key=lambda plan: plan.version)

    def get(self, code: str, version: int) -> PlanVersion:
        """The exact version a subscription is on."""
        try:
            return self._by_key[(code, version)]
        except KeyError:
            known = ", ".join(f"v{plan.version}" for plan in self._by_code.get(code, ()))
            raise PlanNotFoundError(
                f"no plan {code!r} v{version} in the catalog (versions: {known or 'none'})"
            ) from None

    def latest(self, code: str) -> PlanVersion:
        """The newest version of a plan: what new subscriptions get."""
        return self.versions(code)[-1]

    def versions(self, code: str) -> tuple[PlanVersion, ...]:
        """All versions of a plan, oldest first."""
        try:
            return tuple(self._by_code[code])
        except KeyError:
            raise PlanNotFoundError(
                f"no plan {code!r} in the catalog (plans: {', '.join(self.codes())})"
            ) from None

    def codes(self) -> tuple[str, ...]:
        """Plan codes in catalog order (basic, advanced, custom)."""
        return tuple(self._by_code)

    def latest_plans(self) -> tuple[PlanVersion, ...]:
        return tuple(self.latest(code) for code in self.codes())


# -- loading ---------------------------------------------------------------------------------


def load_catalog(path: Path | str | None = None) -> Catalog:
    """Load and validate a catalog file; without a path, the catalog.toml shipped in `plans`."""
    if path is None:
        text = resources.files("plans").joinpath("catalog.toml").read_text(encoding="utf-8")
        return parse_catalog(text)
    return parse_catalog(Path(path).read_text(encoding="utf-8"))


def parse_catalog(source: str | Mapping[str, Any]) -> Catalog:
    """Validate a catalog given as TOML text or as the mapping tomllib makes of it."""
    if isinstance(source, str):
        try:
            data: Mapping[str, Any] = tomllib.loads(source)
        except tomllib.TOMLDecodeError as error:
            raise CatalogError("catalog", "(file)", f"is not valid TOML: {error}") from None
    else:
        data = source
    spec: _CatalogSpec = _convert(data, _CatalogSpec, "catalog", "")
    policies = _parse_policies(spec.sla_policies)
    addons = _parse_addons(spec.addons)
    plans = [_parse_plan(index, raw, addons, policies) for index, raw in enumerate(spec.plans)]
    return Catalog(plans, addons.values(), policies.values())


class _Ref(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    code: str
    version: int


class _CatalogSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    plans: list[dict[str, Any]] = msgspec.field(default_factory=list)
    addons: list[dict[str, Any]] = msgspec.field(default_factory=list)
    sla_policies: list[dict[str, Any]] = msgspec.field(default_factory=list)


class _PlanSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    code: str
    version: int
    name: str
    tier: PlanTier
    currency: str
    billing_period: BillingPeriodKind
    proration_invoicing: ProrationInvoicing
    charges: list[dict[str, Any]]
    description: str = ""
    trial_days: int = 0
    allows_overrides: bool = False
    sla_policy: _Ref | None = None
    addons: dict[str, int] = msgspec.field(default_factory=dict)
    days_until_due: int = DEFAULT_DAYS_UNTIL_DUE


class _AddonSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    code: str
    version: int
    name: str
    currency: str
    exclusive_group: str | None = None


_ADDON_META: Final = frozenset(_AddonSpec.__struct_fields__)
_MSGSPEC_MISSING: Final = re.compile(
    r"^Object missing required field `(?P<field>\w+)`(?P<rest>.*)$"
)
_MSGSPEC_UNKNOWN: Final = re.compile(
    r"^Object contains unknown field `(?P<field>\w+)`(?P<rest>.*)$"
)
_MSGSPEC_AT: Final = re.compile(r"^(?P<problem>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_FIELD_FIRST: Final = re.compile(
    r"^(?P<field>[a-z_][a-z0-9_\[\].]*) (?P<problem>(?:must|is|has) .*)$"
)


def _describe(error: msgspec.ValidationError) -> tuple[str, str]:
    """(field path, problem) from a msgspec validation message."""
    message = str(error)
    match = _MSGSPEC_AT.match(message)
    problem, path = (match["problem"], match["path"] or "") if match else (message, "")
    path = path.lstrip(".")
    for pattern, what in (
        (_MSGSPEC_MISSING, "is required"),
        (_MSGSPEC_UNKNOWN, "is not a known field"),
    ):
        found = pattern.match(problem)
        if found:
            return _join(path, found["field"]), what
    found = _FIELD_FIRST.match(problem)
    if found:
        return _join(path, found["field"]), found["problem"]
    return path or "(value)", problem


def _join(prefix: str, field: str) -> str:
    if not prefix:
        return field
    if not field:
        return prefix
    return f"{prefix}.{field}"


def _convert(raw: Any, kind: Any, where: str, prefix: str) -> Any:
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as error:
        field, problem = _describe(error)
        raise CatalogError(where, _join(prefix, field), problem) from None


def _reject_floats(value: Any, where: str, path: str) -> None:
    if isinstance(value, float):
        raise CatalogError(
            where,
            path or "(value)",
            f'is the float {value!r}: write money and rates as strings like "0.30"',
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            _reject_floats(item, where, _join(path, str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _reject_floats(item, where, f"{path}[{index}]")


def _check_code(where: str, field: str, code: str) -> None:
    if not _CODE.match(code):
        raise CatalogError(
            where,
            field,
            f"{code!r} must be lowercase letters, digits and _ (starting with a letter)",
        )


def _check_version(where: str, version: int) -> None:
    if version < 1:
        raise CatalogError(where, "version", f"must be 1 or more, got {version}")


def _check_currency(where: str, currency: str) -> None:
    try:
        exponent(currency)
    except UnknownCurrencyError as error:
        raise CatalogError(where, "currency", str(error)) from None


def _label(kind: str, raw: Any, index: int, collection: str) -> str:
    if isinstance(raw, Mapping) and isinstance(raw.get("code"), str):
        version = raw.get("version")
        return f"{kind} {raw['code']!r}" + (f" v{version}" if isinstance(version, int) else "")
    return f"{collection}[{index}]"


def _parse_policies(raws: list[dict[str, Any]]) -> dict[tuple[str, int], SlaPolicy]:
    policies: dict[tuple[str, int], SlaPolicy] = {}
    for index, raw in enumerate(raws):
        where = _label("sla policy", raw, index, "sla_policies")
        _reject_floats(raw, where, "")
        policy: SlaPolicy = _convert(raw, SlaPolicy, where, "")
        _check_code(where, "code", policy.code)
        _check_version(where, policy.version)
        for rule_index, rule in enumerate(policy.rules):
            _check_code(where, f"rules[{rule_index}].code", rule.code)
        if (policy.code, policy.version) in policies:
            raise CatalogError(where, "version", "is published twice")
        policies[(policy.code, policy.version)] = policy
    return policies


def _parse_addons(raws: list[dict[str, Any]]) -> dict[tuple[str, int], Addon]:
    addons: dict[tuple[str, int], Addon] = {}
    for index, raw in enumerate(raws):
        where = _label("add-on", raw, index, "addons")
        if not isinstance(raw, Mapping):
            raise CatalogError(where, "(table)", "must be a table")
        _reject_floats(raw, where, "")
        meta: _AddonSpec = _convert(
            {k: v for k, v in raw.items() if k in _ADDON_META}, _AddonSpec, where, ""
        )
        _check_code(where, "code", meta.code)
        _check_version(where, meta.version)
        _check_currency(where, meta.currency)
        charge_fields = {k: v for k, v in raw.items() if k not in _ADDON_META}
        charge: AddonCharge = _convert({**charge_fields, "code": meta.code}, AddonCharge, where, "")
        addon = Addon(
            code=meta.code,
            version=meta.version,
            name=meta.name,
            currency=meta.currency,
            charge=charge,
            exclusive_group=meta.exclusive_group,
        )
        if addon.exclusive_group is not None:
            _check_code(where, "exclusive_group", addon.exclusive_group)
        if (addon.code, addon.version) in addons:
            raise CatalogError(where, "version", "is published twice")
        addons[(addon.code, addon.version)] = addon
    return addons


def _parse_plan(
    index: int,
    raw: Any,
    addons: Mapping[tuple[str, int], Addon],
    policies: Mapping[tuple[str, int], SlaPolicy],
) -> PlanVersion:
    where = _label("plan", raw, index, "plans")
    if isinstance(raw, Mapping):
        _reject_floats({k: v for k, v in raw.items() if k != "charges"}, where, "")
    spec: _PlanSpec = _convert(raw, _PlanSpec, where, "")
    _check_code(where, "code", spec.code)
    _check_version(where, spec.version)
    _check_currency(where, spec.currency)
    if not spec.name.strip():
        raise CatalogError(where, "name", "must not be empty")
    if spec.trial_days < 0:
        raise CatalogError(where, "trial_days", f"must not be negative, got {spec.trial_days}")
    if not spec.charges:
        raise CatalogError(where, "charges", "must list at least one charge")
    if not 1 <= spec.days_until_due <= 365:
        raise CatalogError(
            where, "days_until_due", f"must be 1 to 365 days, got {spec.days_until_due}"
        )

    charges: list[Charge] = []
    for charge_index, raw_charge in enumerate(spec.charges):
        code = raw_charge.get("code")
        prefix = f"charges[{charge_index}]" + (f" ({code!r})" if isinstance(code, str) else "")
        _reject_floats(raw_charge, where, prefix)
        charge: Charge = _convert(raw_charge, Charge, where, prefix)
        _check_code(where, f"{prefix}.code", charge.code)
        if any(existing.code == charge.code for existing in charges):
            raise CatalogError(
                where, f"{prefix}.code", f"{charge.code!r} is used by another charge"
            )
        charges.append(charge)

    offered: list[Addon] = []
    for addon_code, addon_version in spec.addons.items():
        field = f"addons.{addon_code}"
        addon = addons.get((addon_code, addon_version))
        if addon is None:
            raise CatalogError(
                where,
                field,
                f"refers to add-on {addon_code!r} v{addon_version}, which is not defined",
            )
        if addon.currency != spec.currency:
            raise CatalogError(
                where, field, f"add-on is priced in {addon.currency}, the plan in {spec.currency}"
            )
        if any(charge.code == addon_code for charge in charges):
            raise CatalogError(where, field, f"{addon_code!r} is also the code of a plan charge")
        offered.append(addon)

    policy = None
    if spec.sla_policy is not None:
        policy = policies.get((spec.sla_policy.code, spec.sla_policy.version))
        if policy is None:
            raise CatalogError(
                where,
                "sla_policy",
                f"refers to SLA policy {spec.sla_policy.code!r} v{spec.sla_policy.version}, "
                "which is not defined",
            )

    return PlanVersion(
        code=spec.code,
        version=spec.version,
        name=spec.name,
        tier=spec.tier,
        description=spec.description,
        currency=spec.currency,
        billing_period=spec.billing_period,
        proration_invoicing=spec.proration_invoicing,
        trial_days=spec.trial_days,
        allows_overrides=spec.allows_overrides,
        charges=tuple(charges),
        addons=tuple(offered),
        sla_policy=policy,
        days_until_due=spec.days_until_due,
    )
