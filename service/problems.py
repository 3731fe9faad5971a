"""RFC 9457 problem+json: every error the API answers, mapped once, each with a stable ``type``."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from typing import Any

import msgspec
import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import Scope, Send

from service.db.engine import is_unavailable as is_database_unavailable
from service.errors import PROBLEM_BASE, BillingError, DatabaseUnavailable
from service.wire import PATTERN_HINTS

log = structlog.get_logger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"

_SLUG_BY_STATUS = {
    400: "bad-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    408: "request-timeout",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "invalid-input",
    429: "too-many-requests",
    503: "unavailable",
}


class Problem(dict[str, Any]):
    """Documentation shape of a problem document (the body is a plain JSON object)."""


def problem_document(
    *,
    status: int,
    slug: str,
    title: str,
    detail: str,
    instance: str,
    request_id: str | None,
    **extra: Any,
) -> dict[str, Any]:
    """The body of every problem answer, whichever layer sends it."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if request_id:
        body["request_id"] = request_id
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def error_document(error: BillingError, *, instance: str, request_id: str | None) -> dict[str, Any]:
    """The problem document of a domain error (``retry_after`` goes in a header, not here)."""
    extra = {name: value for name, value in error.extra.items() if name != "retry_after"}
    return problem_document(
        status=error.status,
        slug=error.slug,
        title=error.title,
        detail=error.detail,
        instance=instance,
        request_id=request_id,
        **extra,
    )


def retry_after_headers(error: BillingError) -> list[tuple[bytes, bytes]]:
    """``Retry-After`` (whole seconds) for an error that says when to try again."""
    retry_after = error.extra.get("retry_after")
    if retry_after is None:
        return []
    return [(b"retry-after", str(max(1, math.ceil(retry_after))).encode())]


def unavailable_database_error() -> DatabaseUnavailable:
    """What a request answers when PostgreSQL went away under it (see `service.db.engine`)."""
    return DatabaseUnavailable(
        "the database cannot be reached just now (it may be restarting): send the request again"
        " shortly; a usage event or an Idempotency-Key request sent again is never counted twice",
        retry_after=DatabaseUnavailable.retry_after_seconds,
    )


async def send_json(
    send: Send,
    status: int,
    body: bytes,
    *,
    media_type: str = "application/json",
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Answer from plain ASGI code (middleware, the single-event hot path)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", media_type.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(
    scope: Scope, send: Send, error: BillingError, *, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Answer a domain error from plain ASGI code, with the body the exception handler sends."""
    document = error_document(
        error, instance=_instance(scope), request_id=scope.get("state", {}).get("request_id")
    )
    await send_json(
        send,
        error.status,
        msgspec.json.encode(document),
        media_type=PROBLEM_MEDIA_TYPE,
        headers=[*headers, *retry_after_headers(error)],
    )


async def send_internal_error(scope: Scope, send: Send, error: Exception) -> None:
    """`internal_error` from plain ASGI code: logged with its traceback, answered 500 (a 503
    when the database went away under the request)."""
    if is_database_unavailable(error):
        _log_unavailable(_instance(scope), error)
        await send_error(scope, send, unavailable_database_error())
        return
    _log_unhandled(_instance(scope), error)
    document = problem_document(
        **_INTERNAL, instance=_instance(scope), request_id=scope.get("state", {}).get("request_id")
    )
    await send_json(send, 500, msgspec.json.encode(document), media_type=PROBLEM_MEDIA_TYPE)


def _instance(scope: Scope) -> str:
    """The request's path, as ``request.url.path`` gives it."""
    return str(scope.get("root_path", "")) + str(scope["path"])


def _problem(
    request: Request[Any, Any, Any],
    *,
    status: int,
    slug: str,
    title: str,
    detail: str,
    **extra: Any,
) -> Response[dict[str, Any]]:
    body = problem_document(
        status=status,
        slug=slug,
        title=title,
        detail=detail,
        instance=request.url.path,
        request_id=request.scope.get("state", {}).get("request_id"),
        **extra,
    )
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE)


def billing_error(request: Request[Any, Any, Any], exc: BillingError) -> Response[dict[str, Any]]:
    extra = dict(exc.extra)
    extra.pop("retry_after", None)
    response = _problem(
        request, status=exc.status, slug=exc.slug, title=exc.title, detail=exc.detail, **extra
    )
    for name, value in retry_after_headers(exc):
        response.headers[name.decode()] = value.decode()
    return response


def validation_error(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[dict[str, Any]]:
    errors = [
        _error_entry(request, item)
        for item in (exc.extra if isinstance(exc.extra, list) else [])
        if isinstance(item, dict)
    ]
    detail = "; ".join(
        f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors
    ) or str(exc.detail)
    return _problem(
        request,
        status=400,
        slug="validation-error",
        title="Request is not valid",
        detail=detail,
        field=errors[0]["field"] if errors else None,
        errors=errors or None,
    )


_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")
_MISSING_FIELD = re.compile(r"missing required field `([^`]+)`")
_HOSTILE_FIELD = re.compile(r"^field `([^`]+)` (.*)$", re.DOTALL)
_REGEX = re.compile(r"matching regex '(.*)'$", re.DOTALL)
_CHOICES = re.compile(r"^\^\(([\w:|]+)\)\$$")


def _error_entry(request: Request[Any, Any, Any], item: dict[str, Any]) -> dict[str, Any]:
    """One refused value: the field's path, and a message in words (a suggestion for a
    misspelt field, the meaning of a pattern, never the regex itself)."""
    key = str(item.get("key") or "")
    message = str(item.get("message", ""))
    if item.get("source") != "body":
        key = _wire_name(request, key)
    parent = "" if key in ("", "data", "$") else key.removeprefix("$").removeprefix(".")
    field: str | None = parent or None
    if unknown := _UNKNOWN_FIELD.search(message):
        name = unknown.group(1)
        field = _join(parent, name)
        message = f"unknown field `{name}`" + _suggestion(request, parent, name)
    elif missing := _MISSING_FIELD.search(message):
        field = _join(parent, missing.group(1))
        message = f"`{missing.group(1)}` is required: send it"
    elif hostile := _HOSTILE_FIELD.match(message):
        field = _join(parent, hostile.group(1))
        message = hostile.group(2)
    elif regex := _REGEX.search(message):
        message = "must be " + _pattern_hint(regex.group(1))
    return {"field": field, "message": message, "source": item.get("source")}


def _wire_name(request: Request[Any, Any, Any], key: str) -> str:
    """A parameter as the client names it (``from``), not as the handler does (``first_day``)."""
    try:
        definition = request.route_handler.parsed_fn_signature.parameters.get(key)
    except AttributeError:
        return key
    kwarg = getattr(definition, "kwarg_definition", None)
    for alias in ("query", "header", "cookie", "name"):
        if name := getattr(kwarg, alias, None):
            return str(name)
    return key


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def _pattern_hint(shown: str) -> str:
    """What a pattern means; msgspec shows the regex as a repr (backslashes doubled)."""
    for regex, hint in PATTERN_HINTS.items():
        if shown in (regex, regex.replace("\\", "\\\\")):
            return hint
    if choices := _CHOICES.match(shown):
        return "one of " + ", ".join(f"`{choice}`" for choice in choices.group(1).split("|"))
    return "in the documented format (see the API reference at /schema)"


def _suggestion(request: Request[Any, Any, Any], parent: str, name: str) -> str:
    """ ", did you mean `x`?" for a misspelt field of the body, or the fields there are."""
    known = _known_fields(request, parent)
    if not known:
        return ""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f": did you mean `{close[0]}`?"
    return ": the fields here are " + ", ".join(f"`{field}`" for field in known)


def _known_fields(request: Request[Any, Any, Any], parent: str) -> list[str]:
    """The field names of the body's object at ``parent`` (``events[3].gmv``), if known."""
    try:
        data = request.route_handler.parsed_fn_signature.parameters.get("data")
    except AttributeError:
        return []
    if data is None:
        return []
    node: Any = msgspec.inspect.type_info(data.annotation)
    for part in [p for p in re.split(r"\.|\[\d+\]", parent) if p]:
        node = _struct_of(node)
        if node is None:
            return []
        node = next((f.type for f in node.fields if f.encode_name == part), None)
        if node is None:
            return []
    struct = _struct_of(node)
    return [f.encode_name for f in struct.fields] if struct is not None else []


def _struct_of(node: Any) -> Any:
    """The struct a type stands for, through lists, optionals and annotations."""
    while True:
        if isinstance(node, msgspec.inspect.StructType):
            return node
        if isinstance(node, msgspec.inspect.Metadata):
            node = node.type
        elif isinstance(node, msgspec.inspect.ListType | msgspec.inspect.DictType):
            node = getattr(node, "item_type", None) or node.value_type
        elif isinstance(node, msgspec.inspect.UnionType):
            node = next(
                (t for t in node.types if not isinstance(t, msgspec.inspect.NoneType)), None
            )
        else:
            return None


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    if status >= 500:
        return internal_error(request, exc)
    slug = _SLUG_BY_STATUS.get(status, "client-error")
    return _problem(
        request,
        status=status,
        slug=slug,
        title=slug.replace("-", " ").capitalize(),
        detail=str(exc.detail),
    )


_INTERNAL: dict[str, Any] = {
    "status": 500,
    "slug": "internal-error",
    "title": "Internal error",
    "detail": "The service failed to answer. Quote the request_id when you report it.",
}


def _log_unhandled(path: str, error: Exception) -> None:
    log.exception("unhandled_error", path=path, error_type=type(error).__name__)


def _log_unavailable(path: str, error: BaseException) -> None:
    log.warning("database_unavailable", path=path, error_type=type(error).__name__)


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if is_database_unavailable(exc):
        # Not a bug: PostgreSQL went away under the request. A 503 the client retries.
        _log_unavailable(request.url.path, exc)
        return billing_error(request, unavailable_database_error())
    _log_unhandled(request.url.path, exc)
    return _problem(request, **_INTERNAL)


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    BillingError: billing_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    Exception: internal_error,
}


def responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI ``responses`` entries documenting problem+json answers."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=_SLUG_BY_STATUS.get(status, "error").replace("-", " "),
            media_type=PROBLEM_MEDIA_TYPE,
            generate_examples=False,
        )
        for status in statuses
    }


__all__ = ["EXCEPTION_HANDLERS", "PROBLEM_MEDIA_TYPE", "MediaType", "responses"]
