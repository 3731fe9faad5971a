"""Reads the pinned Stripe SDK's type annotations: the one source for request and response shapes.

The SDK writes many annotations as strings or forward references to names that only exist under
``TYPE_CHECKING``; this module evaluates them against the defining module, then ``typing``, then
the top-level ``stripe`` namespace, and reports what it cannot resolve as ``None``.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import sys
import types
import typing
from collections.abc import Mapping
from typing import Any, ForwardRef

import stripe
from stripe._object_classes import OBJECT_CLASSES
from stripe._request_options import RequestOptions

# Keys every params TypedDict inherits from RequestOptions: the SDK strips them off into request
# options (headers), so they never travel as parameters.
REQUEST_OPTION_KEYS = frozenset(RequestOptions.__annotations__)


class _Names(dict[str, Any]):
    """Lazy namespace for ``eval``: module globals, then typing, then ``stripe.<Name>``."""

    def __init__(self, module_globals: Mapping[str, Any], owner: type | None) -> None:
        super().__init__()
        self._module_globals = module_globals
        self._owner = owner

    def __missing__(self, name: str) -> Any:
        if self._owner is not None and name in vars(self._owner):
            return vars(self._owner)[name]
        if name in self._module_globals:
            return self._module_globals[name]
        if hasattr(typing, name):
            return getattr(typing, name)
        aliased = type_checking_names(self._module_globals.get("__name__", "")).get(name)
        if aliased is not None:
            module_name, attribute = aliased
            return getattr(importlib.import_module(module_name), attribute)
        try:
            return getattr(stripe, name)
        except AttributeError:
            raise KeyError(name) from None  # falls through to globals and builtins


@functools.cache
def type_checking_names(module_name: str) -> dict[str, tuple[str, str]]:
    """``{"RefundResource": ("stripe._refund", "Refund")}``: the names a module imports (under
    ``TYPE_CHECKING`` too, often with an alias), read from its source."""
    module = sys.modules.get(module_name)
    if module is None or not module_name.startswith("stripe"):
        return {}
    names: dict[str, tuple[str, str]] = {}
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                names[alias.asname or alias.name] = (node.module, alias.name)
    return names


def resolve(annotation: Any, owner: type) -> Any:
    """Evaluate one annotation (string or ForwardRef) in the namespace of the class that owns it.

    Returns ``None`` for a name the SDK only imports for type checkers under an alias.
    """
    if isinstance(annotation, ForwardRef):
        annotation = annotation.__forward_arg__
    if not isinstance(annotation, str):
        return annotation
    module = sys.modules[owner.__module__]
    try:
        return eval(annotation, dict(vars(module)), _Names(vars(module), owner))  # noqa: S307 - SDK source
    except NameError:
        return None


@functools.cache
def fields(cls: type) -> dict[str, Any]:
    """Resolved field annotations of an SDK resource or nested StripeObject class."""
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            if name.startswith("_") or name == "OBJECT_NAME":
                continue
            resolved = resolve(annotation, klass)
            if typing.get_origin(resolved) is typing.ClassVar:
                hints.pop(name, None)
                continue
            hints[name] = resolved
    return hints


@functools.cache
def param_fields(params_cls: type) -> dict[str, tuple[Any, bool]]:
    """Name -> (resolved type, is_required) of a params TypedDict, minus request options."""
    required = params_cls.__required_keys__  # type: ignore[attr-defined]
    out: dict[str, tuple[Any, bool]] = {}
    for name, annotation in params_cls.__annotations__.items():
        if name in REQUEST_OPTION_KEYS:
            continue
        tp = annotation
        origin = typing.get_origin(tp)
        if origin in (typing.NotRequired, typing.Required):
            (tp,) = typing.get_args(tp)
        tp = resolve(tp, params_cls)
        origin = typing.get_origin(tp)
        if origin in (typing.NotRequired, typing.Required):
            (tp,) = typing.get_args(tp)
        out[name] = (tp, name in required)
    return out


def resolve_in(annotation: Any, owner: type) -> Any:
    """``resolve`` applied inside generics too: ``ListObject[ForwardRef("Refund")]`` ->
    ``ListObject[stripe.Refund]`` (unresolvable names become ``None``)."""
    annotation = resolve(annotation, owner)
    origin = typing.get_origin(annotation)
    if origin is None:
        return annotation
    args = tuple(resolve_in(arg, owner) for arg in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return typing.Union[args]  # noqa: UP007 - built from a tuple
    if origin is typing.Literal:
        return annotation
    try:
        return origin[args] if len(args) > 1 else origin[args[0]]
    except TypeError:
        return annotation


def object_class(object_name: str) -> type | None:
    """The SDK resource class registered for an ``object`` value ("invoice" -> stripe.Invoice)."""
    entry = OBJECT_CLASSES.get(object_name)
    if entry is None:
        return None
    module_path, class_name = entry
    return getattr(importlib.import_module(module_path), class_name)
