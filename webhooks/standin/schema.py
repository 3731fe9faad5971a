"""Request decoding and validation against the SDK's own params TypedDicts.

Stripe requests are form-encoded (``metadata[k]=v``, ``lines[0][amount]=1``, ``expand[]=x``);
``decode_form`` turns them into nested dicts, and ``validate`` checks them against the params type
the SDK's service method declares for that route (found by reading the SDK's service modules, see
``sdk_routes``), returning the values coerced to Python types. Failures raise ``StripeError``
carrying Stripe's error shape.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import re
import types
import typing
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

import stripe.params
from stripe._stripe_object import UntypedStripeObject

from webhooks.standin import sdk_types


@dataclass
class StripeError(Exception):
    """An API error answered in Stripe's shape: ``{"error": {type, message, param?, code?}}``."""

    status: int
    type: str
    message: str
    param: str | None = None
    code: str | None = None
    extra: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.param is not None:
            error["param"] = self.param
        if self.code is not None:
            error["code"] = self.code
        if self.extra:
            error.update(self.extra)
        return {"error": error}


def invalid(message: str, *, param: str | None = None, code: str | None = None) -> StripeError:
    return StripeError(400, "invalid_request_error", message, param=param, code=code)


def missing_resource(kind: str, object_id: str, *, param: str = "id") -> StripeError:
    return StripeError(
        404,
        "invalid_request_error",
        f"No such {kind}: '{object_id}'",
        param=param,
        code="resource_missing",
    )


# ---------------------------------------------------------------------------------------------
# Form decoding

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def decode_form(encoded: str) -> dict[str, Any]:
    """``a[b][0]=1&expand[]=x`` -> ``{"a": {"b": {"0": "1"}}, "expand": {"0": "x"}}``.

    Arrays stay dicts keyed by index here; ``validate`` turns them into lists where the SDK's
    type says List (so a ``metadata[0]`` key stays a metadata key).
    """
    root: dict[str, Any] = {}
    for raw_key, value in parse_qsl(encoded, keep_blank_values=True):
        match = _KEY.match(raw_key)
        if match is None:
            raise invalid(f"Invalid parameter name: {raw_key}", param=raw_key)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for depth, part in enumerate(parts):
            key = str(len(node)) if part == "" else part
            is_leaf = depth == len(parts) - 1
            existing = node.get(key)
            if is_leaf:
                if isinstance(existing, dict):
                    raise invalid(f"Invalid value for {raw_key}: mixes a value and a hash")
                node[key] = value
            else:
                if existing is None:
                    existing = node[key] = {}
                elif not isinstance(existing, dict):
                    raise invalid(f"Invalid value for {raw_key}: mixes a value and a hash")
                node = existing
    return root


# ---------------------------------------------------------------------------------------------
# Validation against the SDK's TypedDicts


def _join(path: str, key: str) -> str:
    return f"{path}[{key}]" if path else key


def _is_typeddict(tp: Any) -> bool:
    # The SDK builds them with typing_extensions, which typing.is_typeddict does not recognise.
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def validate(params_cls: type, values: dict[str, Any], path: str = "") -> dict[str, Any]:
    """Check ``values`` against a params TypedDict; returns them coerced (ints, bools, lists)."""
    declared = sdk_types.param_fields(params_cls)
    for key in values:
        if key not in declared:
            name = _join(path, key)
            raise invalid(
                f"Received unknown parameter: {name}", param=name, code="parameter_unknown"
            )
    for key, (_, is_required) in declared.items():
        if is_required and key not in values:
            name = _join(path, key)
            raise invalid(f"Missing required param: {name}.", param=name, code="parameter_missing")
    return {
        key: _coerce(declared[key][0], value, _join(path, key), params_cls)
        for key, value in values.items()
    }


def _as_list(value: Any, path: str) -> list[Any] | None:
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and all(k.isdigit() for k in value):
        return [value[k] for k in sorted(value, key=int)]
    if value == "":
        return []
    return None


def _literal_text(literal: Any) -> str:
    if isinstance(literal, bool):
        return "true" if literal else "false"
    return str(literal)


def _coerce(tp: Any, value: Any, path: str, owner: type) -> Any:
    tp = sdk_types.resolve(tp, owner)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is None:
        return value
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(args, value, path, owner)
    if origin is typing.Literal:
        for literal in args:
            if isinstance(value, str) and value == _literal_text(literal):
                return literal
        choices = " or ".join(_literal_text(a) for a in args if a != "")
        raise invalid(f"Invalid {path}: must be one of {choices}", param=path)
    if origin in (list, typing.List):  # noqa: UP006 - the SDK's alias
        items = _as_list(value, path)
        if items is None:
            raise invalid(f"Invalid array: {path}", param=path)
        return [_coerce(args[0], item, f"{path}[{i}]", owner) for i, item in enumerate(items)]
    if origin in (dict, typing.Dict) or origin is UntypedStripeObject:  # noqa: UP006
        if not isinstance(value, dict):
            raise invalid(f"Invalid object: {path}", param=path)
        value_type = args[-1] if args else Any
        return {k: _coerce(value_type, v, _join(path, k), owner) for k, v in value.items()}
    if _is_typeddict(tp):
        if not isinstance(value, dict):
            raise invalid(f"Invalid object: {path}", param=path)
        return validate(tp, value, path)
    if isinstance(value, dict | list):
        raise invalid(f"Invalid {path}: expected a single value, got a hash", param=path)
    if tp is str:
        return value
    if tp is bool:
        if value in ("true", "false"):
            return value == "true"
        raise invalid(f"Invalid boolean: {value}", param=path)
    if tp is int:
        try:
            return int(value)
        except ValueError:
            raise invalid(
                f"Invalid integer: {value}", param=path, code="parameter_invalid_integer"
            ) from None
    if tp in (float, Decimal):
        try:
            return Decimal(value)
        except InvalidOperation:
            raise invalid(f"Invalid decimal: {value}", param=path) from None
    return value


def _coerce_union(args: tuple[Any, ...], value: Any, path: str, owner: type) -> Any:
    first_error: StripeError | None = None

    # Try the structured branches first for hashes, scalar branches first for strings, so the
    # error reported is the one about the shape the caller meant.
    def is_structured(tp: Any) -> bool:
        resolved = sdk_types.resolve(tp, owner)
        return _is_typeddict(resolved) or typing.get_origin(resolved) in (
            list,
            dict,
            UntypedStripeObject,
        )

    # The SDK types enums as ``Literal[...] | str`` so that new values do not break old clients;
    # the API itself only accepts the listed values, and this stand-in has the same version.
    literals = [a for a in args if typing.get_origin(a) is typing.Literal]
    if str in args and any(v != "" for lit in literals for v in typing.get_args(lit)):
        args = tuple(a for a in args if a is not str)
    ordered = sorted(args, key=lambda a: is_structured(a) != isinstance(value, dict))
    for arg in ordered:
        if arg is type(None):
            continue
        try:
            return _coerce(arg, value, path, owner)
        except StripeError as error:
            if first_error is None or (error.code == "parameter_unknown" and is_structured(arg)):
                first_error = error
    assert first_error is not None
    raise first_error


# ---------------------------------------------------------------------------------------------
# Which params type the SDK sends on which route

# The SDK service modules this stand-in serves; their methods name the params type per route.
SERVICE_MODULES = (
    "stripe._balance_transaction_service",
    "stripe._charge_service",
    "stripe.billing_portal._configuration_service",
    "stripe.billing_portal._session_service",
    "stripe.checkout._session_service",
    "stripe._credit_note_line_item_service",
    "stripe._credit_note_service",
    "stripe._customer_service",
    "stripe._dispute_service",
    "stripe._event_service",
    "stripe._invoice_item_service",
    "stripe._invoice_line_item_service",
    "stripe._invoice_payment_service",
    "stripe._invoice_service",
    "stripe._payment_intent_service",
    "stripe._payment_method_service",
    "stripe._price_service",
    "stripe._product_service",
    "stripe._refund_service",
    "stripe._setup_intent_service",
)


@dataclass(frozen=True)
class Operation:
    """One SDK service method: the route it calls, the params type it sends, what it answers."""

    service: str
    """The service class, ``stripe._invoice_service.InvoiceService``."""
    method: str
    """Its method, ``finalize_invoice``."""
    http_method: str
    path: str
    """As the SDK writes it: ``/v1/invoices/{invoice}/finalize``."""
    params_type: type
    answer: Any
    """The answer's SDK type: a resource class, or ``ListObject[Resource]``."""


@functools.cache
def sdk_operations() -> tuple[Operation, ...]:
    """Every method of the served SDK services, read from the SDK's source (not its docs)."""
    operations = []
    for module_name in SERVICE_MODULES:
        module = importlib.import_module(module_name)
        tree = ast.parse(inspect.getsource(module))
        for klass in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            owner = getattr(module, klass.name)
            for node in klass.body:
                if not isinstance(node, ast.FunctionDef):
                    continue
                params_arg = next((a for a in node.args.args if a.arg == "params"), None)
                if params_arg is None or params_arg.annotation is None:
                    continue
                constants = [
                    n.value
                    for n in ast.walk(node)
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)
                ]
                method = next((c for c in constants if c in ("get", "post", "delete")), None)
                path = next((c for c in constants if c.startswith("/v1/")), None)
                params_name = re.search(r"(\w+Params)", ast.unparse(params_arg.annotation))
                if not (method and path and params_name and node.returns is not None):
                    continue
                answer_text = ast.unparse(node.returns).strip("'\"")
                operations.append(
                    Operation(
                        service=f"{module_name}.{klass.name}",
                        method=node.name,
                        http_method=method.upper(),
                        path=path,
                        params_type=_params_type(module_name, params_name.group(1)),
                        answer=sdk_types.resolve_in(answer_text, owner),
                    )
                )
    return tuple(operations)


def _params_type(module_name: str, name: str) -> type:
    """A service method's params TypedDict: ``stripe.params.<Name>``, or for the services of a
    namespace (``stripe.checkout``) the class its module imports for type checkers."""
    imported = sdk_types.type_checking_names(module_name).get(name)
    if imported is not None:
        module, attribute = imported
        return getattr(importlib.import_module(module), attribute)  # type: ignore[no-any-return]
    return getattr(stripe.params, name)  # type: ignore[no-any-return]


@functools.cache
def sdk_routes() -> dict[tuple[str, str], Operation]:
    """``("POST", "/v1/invoices/{invoice}/pay")`` -> its ``Operation`` (``InvoicePayParams``)."""
    return {(op.http_method, op.path): op for op in sdk_operations()}


def operation_of(bound_method: Any) -> Operation:
    """The operation behind an SDK client method (``client.v1.invoices.pay``)."""
    service = type(bound_method.__self__)
    name = f"{service.__module__}.{service.__name__}"
    for op in sdk_operations():
        if op.service == name and op.method == bound_method.__name__:
            return op
    raise KeyError(f"{name}.{bound_method.__name__} is not a served SDK operation")
