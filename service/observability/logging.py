"""structlog, configured once: console in development, JSON in production.

Every line carries the bound context (``request_id``, and ``merchant_id`` once a key is checked).
Secrets never reach a line, in either format, tracebacks included:

- keys whose names look secret are masked before anything is rendered;
- tracebacks are plain (``traceback`` module): no local variables, which is where request
  headers and freshly minted keys live;
- every rendered line passes `redact`, which blanks API keys, Stripe keys, webhook secrets,
  bearer credentials, session cookies and the configured Stripe secrets wherever they appear
  (in an exception's message, say).

A traceback is formatted off the event loop: a log call with ``exc_info`` made on a running
loop hands its rendering and writing to one background thread, so a burst of failing requests
never holds up the others (formatting a deep traceback takes milliseconds).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TextIO

import msgspec
import structlog

_SECRET_NAMES = ("key", "secret", "authorization", "password", "token", "signature", "cookie")
_configured = False

_SECRET_VALUES = re.compile(
    r"\bkb[mo]_[A-Za-z0-9_-]{8,}"  # our API keys
    r"|\b(?:sk|rk)_(?:test|live)_[A-Za-z0-9]{4,}"  # Stripe secret and restricted keys
    r"|\bwhsec_[A-Za-z0-9+/=]{4,}"  # Stripe webhook signing secrets
    r"|\bps_[0-9a-f]{32}_[A-Za-z0-9_-]{8,}"  # payment-setup link tokens (in request paths)
    r"|(?P<kept>\b(?ai:bearer)\s+|(?ai:kefu_finance_session=))"  # a bearer credential, the
    r"[^\s'\",;]+"  # finance session cookie: the name is kept, the value blanked
)
# Every match of ``_SECRET_VALUES`` holds one of these once lower-cased (its case-insensitive
# parts are ASCII-only for this reason: ``str.lower`` and ``re``'s Unicode case folding differ
# on a few letters). A line holding none (nearly every line: a request line) skips the regex,
# which cost ~20 µs a request line against ~1 µs for these substring checks.
_SECRET_MARKS = (
    "kbm_",
    "kbo_",
    "sk_test_",
    "sk_live_",
    "rk_test_",
    "rk_live_",
    "whsec_",
    "ps_",
    "bearer",
    "kefu_finance_session=",
)
_configured_secrets: tuple[str, ...] = ()


def redact(text: str) -> str:
    """``text`` with every secret we know the shape (or the value) of replaced by ``***``."""
    for secret in _configured_secrets:
        text = text.replace(secret, "***")
    lowered = text.lower()
    if not any(mark in lowered for mark in _SECRET_MARKS):
        return text
    return _SECRET_VALUES.sub(_blank, text)


def _blank(match: re.Match[str]) -> str:
    kept = match.group("kept")
    if kept is not None:
        return kept + "***"
    return match.group(0).split("_", 1)[0] + "_***"


@functools.cache
def _is_secret(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in _SECRET_NAMES) and not lowered.endswith(
        ("_id", "_prefix", "key_ids")
    )


def _mask_secrets(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for name in [name for name in event_dict if _is_secret(name)]:
        event_dict[name] = "***"
    return event_dict


_encode_json = msgspec.json.Encoder(enc_hook=repr).encode


def _json_dumps(event_dict: dict[str, Any], **_: Any) -> str:
    """structlog's JSON renderer, through msgspec: a quarter of the stdlib encoder's cost on a
    request line. Anything msgspec cannot encode is written as its ``repr``."""
    return _encode_json(event_dict).decode()


def _redact_rendered(_: Any, __: str, rendered: Any) -> Any:
    return redact(rendered) if isinstance(rendered, str) else rendered


# -- tracebacks off the event loop --------------------------------------------------------------

_traceback_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="billing-log")
_pending: set[Future[None]] = set()
_pending_lock = threading.Lock()


def _is_on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _off_the_loop(work: Callable[[], None]) -> None:
    future = _traceback_thread.submit(work)
    with _pending_lock:
        _pending.add(future)
    future.add_done_callback(_forget)


def _forget(future: Future[None]) -> None:
    with _pending_lock:
        _pending.discard(future)


def flush(timeout: float = 10.0) -> None:
    """Wait until every traceback handed to the background thread is written (tests, exit)."""
    with _pending_lock:
        waiting = list(_pending)
    for future in waiting:
        future.result(timeout=timeout)


class _TracebacksOffTheLoop:
    """A structlog processor: an event with ``exc_info`` logged on a running event loop is
    finished (the processors after this one, the renderer, the write) on the log thread."""

    def __init__(self, rest: Iterable[Any]) -> None:
        self.rest = list(rest)

    def __call__(self, logger: Any, method_name: str, event_dict: dict[str, Any]) -> Any:
        exc_info = event_dict.get("exc_info")
        if not exc_info or not _is_on_event_loop():
            return event_dict
        if exc_info is True:
            event_dict["exc_info"] = sys.exc_info()
        elif isinstance(exc_info, BaseException):
            event_dict["exc_info"] = (type(exc_info), exc_info, exc_info.__traceback__)
        _off_the_loop(functools.partial(self._finish, logger, method_name, event_dict))
        raise structlog.DropEvent

    def _finish(self, logger: Any, method_name: str, event_dict: dict[str, Any]) -> None:
        rendered: Any = event_dict
        for processor in self.rest:
            rendered = processor(logger, method_name, rendered)
        getattr(logger, method_name)(rendered)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler: library records with a traceback are formatted on the log thread when
    they are logged on a running event loop."""

    def handle(self, record: logging.LogRecord) -> bool:
        if record.exc_info and _is_on_event_loop():
            _off_the_loop(lambda: super(_Handler, self).handle(record) and None)
            return True
        return super().handle(record)


def configure(
    *,
    log_format: str,
    level: str = "INFO",
    force: bool = False,
    stream: TextIO | None = None,
    secrets: Iterable[str | None] = (),
) -> None:
    """``secrets``: values to blank wherever they appear (the configured Stripe key and
    webhook secret), whatever their shape."""
    global _configured, _configured_secrets
    # Secrets are remembered even when logging was configured before (the CLI configures it,
    # then the app it starts names its Stripe secrets); longest first, so none is half-blanked.
    known = {*_configured_secrets, *(s for s in secrets if s and len(s) >= 6)}
    _configured_secrets = tuple(sorted(known, key=len, reverse=True))
    if _configured and not force:
        return
    numeric_level = logging.getLevelNamesMapping().get(level, logging.INFO)
    stream = stream or sys.stderr
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json_dumps)
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(
            colors=stream.isatty(),
            # Plain tracebacks: rich's would print every frame's local variables (keys).
            exception_formatter=structlog.dev.plain_traceback,
        )
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_secrets,
    ]
    rendering: list[Any] = [
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info
        if log_format == "json"
        else structlog.dev.set_exc_info,
        renderer,
        _redact_rendered,
    ]
    structlog.configure(
        processors=[*shared, _TracebacksOffTheLoop(rendering), *rendering],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        # Caching binds loggers to this configuration for good; tests reconfigure.
        cache_logger_on_first_use=log_format == "json" and not force,
    )
    # Libraries that log through the standard library (uvicorn, asyncpg) render the same way.
    handler = _Handler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # A library's exception (uvicorn, asyncpg) keeps its traceback in JSON lines.
                *([structlog.processors.format_exc_info] if log_format == "json" else []),
                renderer,
                _redact_rendered,
            ],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per call: noise here
    _configured = True
