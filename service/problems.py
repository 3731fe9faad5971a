"""RFC 9457 problem+json: every error the API answers, mapped once, each with a stable ``type``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec
import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import Scope, Send

from service.errors import PROBLEM_BASE, BillingError

log = structlog.get_logger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"

_SLUG_BY_STATUS = {
    400: "bad-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "invalid-input",
    429: "too-many-requests",
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
    """The problem document of a domain error."""
    return problem_document(
        status=error.status,
        slug=error.slug,
        title=error.title,
        detail=error.detail,
        instance=instance,
        request_id=request_id,
        **error.extra,
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
        headers=headers,
    )


async def send_internal_error(scope: Scope, send: Send, error: Exception) -> None:
    """`internal_error` from plain ASGI code: logged with its traceback, answered 500."""
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
    return _problem(
        request, status=exc.status, slug=exc.slug, title=exc.title, detail=exc.detail, **exc.extra
    )


def validation_error(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[dict[str, Any]]:
    errors = [
        {
            "field": _field_name(item.get("key"), item.get("message", "")),
            "message": item.get("message", ""),
            "source": item.get("source"),
        }
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
        errors=errors or None,
    )


_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")


def _field_name(key: Any, message: str) -> str | None:
    """The offending field: msgspec names it in the path, or in the message for unknown fields."""
    text = str(key or "")
    unknown = _UNKNOWN_FIELD.search(message)
    if unknown:
        parent = text.removeprefix("$").removeprefix(".") if text not in ("data", "$") else ""
        return f"{parent}.{unknown.group(1)}" if parent else unknown.group(1)
    if text in ("", "data"):
        return None
    return text.removeprefix("$.")


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


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
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
