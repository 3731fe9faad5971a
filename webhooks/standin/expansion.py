"""What Stripe puts in an answer: includable fields only when asked for, and ``expand[]``.

Stripe leaves some fields out of every answer unless the request names them in ``expand[]``:
the **includable** fields (``Invoice.payments``, the ``line_items`` of Checkout Sessions,
Payment Links and Quotes, ...). Webhook payloads never carry them, since an event cannot be
expanded. Which fields they are is read from the SDK itself: its resource methods say "When
retrieving a(n) <object>, there is an includable <field> property" (`sdk_includable`). A few
more were made includable by API versions whose SDK docstrings do not say so; they are listed
with the changelog entry that made them so (`DOCUMENTED_INCLUDABLE`).

``expand[]`` works as Stripe's does: a dotted path (at most four levels) through fields of the
answer's SDK type; a step may be an expandable id (``customer``: replaced by the object), an
includable field, a nested hash, or ``data`` of a list. Anything else is refused before the
request does anything, with Stripe's message ("This property cannot be expanded (x).", and on a
list "You may want to try expanding 'data.x' instead.").
"""

from __future__ import annotations

import copy
import functools
import importlib
import re
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

from stripe import ListObject, StripeObject
from stripe._object_classes import OBJECT_CLASSES

from webhooks.standin import sdk_types
from webhooks.standin.schema import StripeError, invalid

Obj = dict[str, Any]
Tree = dict[str, "Tree"]

MAX_DEPTH = 4
"""Stripe expands at most four levels (``data.invoice.subscription.default_source``)."""

DOCUMENTED_INCLUDABLE: dict[tuple[str, str], str] = {
    ("customer", "sources"): "API 2020-08-27: Customer sources are no longer auto-expanded",
    ("customer", "subscriptions"): "API 2020-08-27: Customer subscriptions are no longer "
    "auto-expanded",
    ("customer", "tax_ids"): "API 2020-08-27: Tax IDs are no longer auto-expanded on the "
    "Customer object",
    ("charge", "refunds"): "API 2022-11-15: The Charges object no longer auto-expands refunds",
}
"""Includable fields the SDK's docstrings do not mark, each with the Stripe changelog entry that
made it so."""

_INCLUDABLE_PHRASE = re.compile(
    r"When retrieving an? (?P<noun>[\w ]+?), there is an includable "
    r"(?:\[(?P<linked>[\w.]+)\]\([^)]*\)|(?P<plain>[\w.]+)) property"
)


def _object_name_for(noun: str) -> str | None:
    """``"Checkout Session"`` -> ``"checkout.session"``, ``"payment link"`` -> ``"payment_link"``
    (the SDK's noun in a docstring -> the ``object`` name)."""
    wanted = noun.strip().lower().replace(" ", "_")
    return next((name for name in OBJECT_CLASSES if name.replace(".", "_") == wanted), None)


def _docstrings(cls: type) -> Iterable[str]:
    for value in vars(cls).values():
        function = value.__func__ if isinstance(value, classmethod | staticmethod) else value
        doc = getattr(function, "__doc__", None)
        if isinstance(doc, str):
            yield doc


@functools.cache
def sdk_includable() -> frozenset[tuple[str, str]]:
    """``(object name, dotted field path)`` of every field the SDK's resource docstrings call
    includable, e.g. ``("invoice", "payments")``."""
    found: set[tuple[str, str]] = set()
    for module_name, class_name in OBJECT_CLASSES.values():
        cls = getattr(importlib.import_module(module_name), class_name)
        for doc in _docstrings(cls):
            if "includable" not in doc:
                continue
            for match in _INCLUDABLE_PHRASE.finditer(doc):
                owner = _object_name_for(match["noun"])
                if owner is None:
                    raise LookupError(f"no SDK object named like {match['noun']!r}")
                found.add((owner, match["linked"] or match["plain"]))
    return frozenset(found)


@functools.cache
def includable() -> dict[str, frozenset[str]]:
    """Object name -> its includable field paths (the SDK's and the documented ones)."""
    by_owner: dict[str, set[str]] = {}
    for owner, path in sdk_includable() | DOCUMENTED_INCLUDABLE.keys():
        by_owner.setdefault(owner, set()).add(path)
    return {owner: frozenset(paths) for owner, paths in by_owner.items()}


def field_type(object_name: str, path: str) -> Any:
    """The SDK type of a dotted field path of an object (None when there is no such field)."""
    cls: Any = sdk_types.object_class(object_name)
    parts = path.split(".")
    for index, part in enumerate(parts):
        if cls is None:
            return None
        tp = sdk_types.fields(cls).get(part)
        if tp is None:
            return None
        if index == len(parts) - 1:
            return sdk_types.resolve_in(tp, cls)
        cls = _hash_class(sdk_types.resolve_in(tp, cls))
    return None


# -- types of a step ---------------------------------------------------------------------------


def _non_null(tp: Any) -> list[Any]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [arg for arg in typing.get_args(tp) if arg is not type(None)]
    return [tp]


def _is_resource(tp: Any) -> bool:
    return (
        isinstance(tp, type)
        and issubclass(tp, StripeObject)
        and bool(getattr(tp, "OBJECT_NAME", None))
    )


def _hash_class(tp: Any) -> type | None:
    """The nested (non-resource) StripeObject class of a hash field, if it is one."""
    for arg in _non_null(tp):
        if isinstance(arg, type) and issubclass(arg, StripeObject) and not _is_resource(arg):
            return arg
    return None


def _id_targets(tp: Any) -> list[type]:
    """Resources an expandable id may name: the SDK types those as ``str | Resource``."""
    args = _non_null(tp)
    if str not in args:
        return []
    return [arg for arg in args if _is_resource(arg)]


def _list_items(tp: Any) -> list[type] | None:
    """The item types of a ``ListObject[...]`` field, or None if it is not a list object."""
    for arg in _non_null(tp):
        if arg is ListObject or typing.get_origin(arg) is ListObject:
            inner = typing.get_args(arg)
            return [i for i in _non_null(inner[0]) if _is_resource(i)] if inner else []
    return None


def _array_targets(tp: Any) -> list[type]:
    """Resources an array of expandable ids may name (``discounts: List[str | Discount]``)."""
    for arg in _non_null(tp):
        if typing.get_origin(arg) is list:
            return _id_targets(typing.get_args(arg)[0])
    return []


def _array_hash_class(tp: Any) -> type | None:
    """The hash class of an array of hashes (``CreditNote.refunds: List[CreditNote.Refund]``)."""
    for arg in _non_null(tp):
        if typing.get_origin(arg) is list:
            return _hash_class(typing.get_args(arg)[0])
    return None


# -- checking a request's expand[] against the answer's type ----------------------------------


def cannot_expand(name: str, *, on_list: bool = False) -> StripeError:
    message = f"This property cannot be expanded ({name})."
    if on_list:
        message += f" You may want to try expanding 'data.{name}' instead."
    return invalid(message)


def tree_of(paths: Iterable[str]) -> Tree:
    """``["payments.data.payment", "customer"]`` -> nested dict; refuses paths too deep."""
    tree: Tree = {}
    for path in paths:
        parts = path.split(".")
        if len(parts) > MAX_DEPTH or "" in parts:
            raise invalid(
                f"You cannot expand more than {MAX_DEPTH} levels of a property. Property: {path}"
                if len(parts) > MAX_DEPTH
                else f"Invalid expand path: {path!r}",
                param="expand",
            )
        node = tree
        for part in parts:
            node = node.setdefault(part, {})
    return tree


def check(answer: Any, paths: list[str]) -> Tree:
    """The expansion tree of ``paths`` for an answer of SDK type ``answer``; a path Stripe
    would refuse raises (before anything is done)."""
    tree = tree_of(paths)
    if not tree:
        return tree
    items = _list_items(answer)
    if items is not None:
        for name in tree:
            if name != "data":
                raise cannot_expand(name, on_list=True)
        _check_any(tree["data"], items)
    else:
        _check_resource(tree, answer)
    return tree


def _check_any(tree: Tree, candidates: list[type]) -> None:
    """A subtree that must fit at least one of ``candidates`` (resources an id may name)."""
    if not tree:
        return
    first_error: StripeError | None = None
    for candidate in candidates:
        try:
            _check_resource(tree, candidate)
            return
        except StripeError as error:
            first_error = first_error or error
    if first_error is not None:
        raise first_error
    raise cannot_expand(next(iter(tree)))


def _check_resource(tree: Tree, cls: type) -> None:
    _check_fields(tree, cls, getattr(cls, "OBJECT_NAME", ""), "")


def _check_fields(tree: Tree, cls: type, owner: str, prefix: str) -> None:
    hints = sdk_types.fields(cls)
    for name, sub in tree.items():
        if name not in hints:
            raise cannot_expand(name)
        tp = sdk_types.resolve_in(hints[name], cls)
        path = prefix + name
        targets = _id_targets(tp) or _array_targets(tp)
        items = _list_items(tp)
        nested = _hash_class(tp) or _array_hash_class(tp)
        if targets:
            _check_any(sub, targets)
        elif items is not None:
            if not sub and path not in includable().get(owner, ()):
                raise cannot_expand(name)
            for key in sub:
                if key != "data":
                    raise cannot_expand(key, on_list=True)
            if sub:
                _check_any(sub["data"], items)
        elif nested is not None and sub:
            _check_fields(sub, nested, owner, path + ".")
        else:
            raise cannot_expand(name)


# -- shaping an answer -------------------------------------------------------------------------


def present(obj: Obj, tree: Tree, find: Callable[[str], Obj | None]) -> Obj:
    """``obj`` (a copy the caller owns) as Stripe answers it for this expansion tree: ids
    expanded into (copies of) the objects ``find`` returns, includable fields kept only where
    the tree asks for them."""
    _expand(obj, tree, find)
    _strip(obj, tree)
    return obj


def without_includable(obj: Obj) -> Obj:
    """``obj`` (a copy the caller owns) as a webhook payload carries it: nothing includable."""
    _strip(obj, {})
    return obj


def _expand(node: Any, tree: Tree, find: Callable[[str], Obj | None]) -> None:
    if not tree or not isinstance(node, dict):
        return
    if node.get("object") == "list":
        for item in node.get("data") or []:
            _expand(item, tree.get("data", {}), find)
        return
    for name, sub in tree.items():
        value = node.get(name)
        if isinstance(value, str):
            target = find(value)
            if target is not None:
                node[name] = value = copy.deepcopy(target)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, str) and (target := find(item)) is not None:
                    value[index] = item = copy.deepcopy(target)
                _expand(item, sub, find)
            continue
        _expand(value, sub, find)


def _strip(node: Any, tree: Tree) -> None:
    if isinstance(node, list):
        for item in node:
            _strip(item, tree)
        return
    if not isinstance(node, dict):
        return
    if node.get("object") == "list":
        _strip(node.get("data"), tree.get("data", {}))
        return
    for path in includable().get(str(node.get("object")), ()):
        if not _asks_for(tree, path):
            _drop(node, path)
    for key, value in node.items():
        if isinstance(value, dict | list):
            _strip(value, tree.get(key, {}))


def _asks_for(tree: Tree, path: str) -> bool:
    node = tree
    for part in path.split("."):
        if part not in node:
            return False
        node = node[part]
    return True


def _drop(node: Obj, path: str) -> None:
    *parents, last = path.split(".")
    for part in parents:
        node = node.get(part)  # type: ignore[assignment]
        if not isinstance(node, dict):
            return
    node.pop(last, None)
