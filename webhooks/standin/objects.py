"""Response objects shaped by the SDK's resource classes: every annotated field, realistic values.

``build("invoice", status="draft", ...)`` starts from a skeleton derived from ``stripe.Invoice``'s
annotations (so a new field in a pinned SDK appears here without an edit) and overlays the values
the store knows. Overlaying a field the class does not declare is a programming error.
"""

from __future__ import annotations

import copy
import functools
import secrets
import string
import types
import typing
from decimal import Decimal
from typing import Any

from stripe import ListObject, StripeObject
from stripe._stripe_object import UntypedStripeObject

from webhooks.standin import sdk_types

_ID_ALPHABET = string.ascii_letters + string.digits

# Stripe's id prefix for each object this stand-in creates.
ID_PREFIXES = {
    "balance_transaction": "txn",
    "billing_portal.configuration": "bpc",
    "billing_portal.session": "bps",
    "charge": "ch",
    "checkout.session": "cs",
    "credit_note": "cn",
    "credit_note_line_item": "cnli",
    "customer": "cus",
    "dispute": "dp",
    "event": "evt",
    "invoice": "in",
    "invoice_payment": "inpay",
    "invoiceitem": "ii",
    "line_item": "il",
    "payment_intent": "pi",
    "payment_method": "pm",
    "price": "price",
    "product": "prod",
    "refund": "re",
    "setup_intent": "seti",
}


def new_id(object_name: str) -> str:
    """A fresh Stripe-style id such as ``cus_Q2x…`` (prefix + 24 base62 characters)."""
    suffix = "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))
    return f"{ID_PREFIXES[object_name]}_{suffix}"


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _default(tp: Any, seen: frozenset[type]) -> Any:
    """The neutral value of one annotated field: null when optional, else an empty shape."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is None or tp is Any:
        return None
    if _is_union(tp):
        if type(None) in args:
            return None
        for arg in args:
            if typing.get_origin(arg) is typing.Literal:
                return typing.get_args(arg)[0]
        return "" if str in args else _default(args[0], seen)
    if origin is typing.Literal:
        return args[0]
    if origin in (list, typing.List):  # noqa: UP006 - the SDK's own alias
        return []
    if origin in (dict, typing.Dict) or origin is UntypedStripeObject:  # noqa: UP006
        return {}
    if origin is ListObject or tp is ListObject:
        return list_object([], url="", has_more=False)
    simple = {str: "", int: 0, bool: False, float: 0.0, Decimal: "0"}
    if tp in simple:
        return simple[tp]
    if isinstance(tp, type) and issubclass(tp, StripeObject):
        if tp in seen or getattr(tp, "OBJECT_NAME", None):
            # A required top-level resource nested in another: the real API would embed or
            # reference it; an empty shell would only mislead.
            return None
        return _skeleton(tp, seen | {tp})
    return None


def _skeleton(cls: type, seen: frozenset[type] = frozenset()) -> dict[str, Any]:
    return {name: _default(tp, seen) for name, tp in sdk_types.fields(cls).items()}


@functools.cache
def _cached_skeleton(cls: type) -> dict[str, Any]:
    return _skeleton(cls, frozenset({cls}))


def skeleton(cls: type) -> dict[str, Any]:
    """A fresh dict with every field of ``cls`` (nested required sub-objects filled in too)."""
    return copy.deepcopy(_cached_skeleton(cls))


def resource_class(object_name: str) -> type:
    cls = sdk_types.object_class(object_name)
    if cls is None:
        raise KeyError(f"the SDK has no resource class for object {object_name!r}")
    return cls


def build(object_name: str, **values: Any) -> dict[str, Any]:
    """An object of type ``object_name`` with every SDK field, overlaid with ``values``."""
    obj = skeleton(resource_class(object_name))
    unknown = set(values) - set(obj)
    if unknown:
        raise KeyError(f"{object_name} has no field(s) {sorted(unknown)} in the pinned SDK")
    obj.update(values)
    obj["object"] = object_name
    if "livemode" in obj:
        obj["livemode"] = False
    return obj


def sub_object(owner: str, path: str, **values: Any) -> dict[str, Any]:
    """A nested object (``sub_object("invoice", "Parent")``) with every field, overlaid."""
    cls: Any = resource_class(owner)
    for part in path.split("."):
        cls = getattr(cls, part)
    obj = skeleton(cls)
    unknown = set(values) - set(obj)
    if unknown:
        raise KeyError(f"{owner}.{path} has no field(s) {sorted(unknown)} in the pinned SDK")
    obj.update(values)
    return obj


def list_object(data: list[dict[str, Any]], *, url: str, has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def deleted_object(object_name: str, object_id: str) -> dict[str, Any]:
    return {"id": object_id, "object": object_name, "deleted": True}
