"""The stand-in's HTTP face: Stripe's ``/v1`` routes and the ``/_standin`` control routes.

Each API request goes: fault injection (before anything is touched) -> route -> decode ->
idempotency ledger -> validation against the SDK's params type and of ``expand[]`` against the
answer's type -> store operation under the store lock -> the answer as Stripe shapes it
(includable fields only when expanded, ids expanded; ``expansion``) -> JSON. The control
routes take and return JSON.
"""

from __future__ import annotations

import copy
import html
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog

from webhooks.standin import expansion, schema
from webhooks.standin.control import DASHBOARD_ACTIONS, HOSTED_ACTIONS
from webhooks.standin.schema import StripeError, invalid
from webhooks.standin.state import API_VERSION, Obj, Params, Store, no_such

if TYPE_CHECKING:
    from webhooks.standin.runner import StandIn

log = structlog.get_logger(__name__)

Handler = Callable[[Store, dict[str, str], Params], Obj]


def _retrieve(kind: str, arg: str) -> Handler:
    def handler(store: Store, args: dict[str, str], _: Params) -> Obj:
        obj = store.get(kind, args[arg])
        if obj.get("deleted") and kind != "customer":  # Stripe still shows deleted customers
            raise no_such(kind, args[arg])
        return obj

    return handler


def _listing(kind: str, url: str, filters: dict[str, str] | None = None) -> Handler:
    def handler(store: Store, _: dict[str, str], params: Params) -> Obj:
        return store.page(store.select(kind, params, filters), params, url)

    return handler


def _list_events(store: Store, _: dict[str, str], params: Params) -> Obj:
    items = store.select("event", params)
    patterns = [params["type"]] if "type" in params else params.get("types")
    if patterns:
        rx = [
            re.compile("^" + re.escape(p).replace(r"\*", "[^.]+(\\.[^.]+)*") + "$")
            for p in patterns
        ]
        items = [e for e in items if any(r.match(e["type"]) for r in rx)]
    return store.page(items, params, "/v1/events")


def _list_invoice_payments(store: Store, _: dict[str, str], params: Params) -> Obj:
    items = store.select("invoice_payment", params, {"invoice": "invoice", "status": "status"})
    wanted = params.get("payment") or {}
    for key, value in wanted.items():
        items = [p for p in items if p["payment"].get(key) == value]
    return store.page(items, params, "/v1/invoice_payments")


# (method, path template exactly as the SDK writes it) -> handler. The templates are checked
# against the SDK's service modules at start, so a route the SDK does not have cannot creep in.
ROUTES: dict[tuple[str, str], Handler] = {
    # customers
    ("POST", "/v1/customers"): lambda s, a, p: s.create_customer(p),
    ("GET", "/v1/customers"): _listing("customer", "/v1/customers", {"email": "email"}),
    ("GET", "/v1/customers/{customer}"): _retrieve("customer", "customer"),
    ("POST", "/v1/customers/{customer}"): lambda s, a, p: s.update_customer(a["customer"], p),
    ("DELETE", "/v1/customers/{customer}"): lambda s, a, p: s.delete_customer(a["customer"]),
    # products and prices
    ("POST", "/v1/products"): lambda s, a, p: s.create_product(p),
    ("GET", "/v1/products"): lambda s, a, p: s.list_products(p),
    ("GET", "/v1/products/{id}"): _retrieve("product", "id"),
    ("POST", "/v1/products/{id}"): lambda s, a, p: s.update_product(a["id"], p),
    ("DELETE", "/v1/products/{id}"): lambda s, a, p: s.delete_product(a["id"]),
    ("POST", "/v1/prices"): lambda s, a, p: s.create_price(p),
    ("GET", "/v1/prices"): lambda s, a, p: s.list_prices(p),
    ("GET", "/v1/prices/{price}"): _retrieve("price", "price"),
    ("POST", "/v1/prices/{price}"): lambda s, a, p: s.update_price(a["price"], p),
    # invoices and their items
    ("POST", "/v1/invoices"): lambda s, a, p: s.create_invoice(p),
    ("GET", "/v1/invoices"): lambda s, a, p: s.list_invoices(p),
    ("GET", "/v1/invoices/{invoice}"): _retrieve("invoice", "invoice"),
    ("POST", "/v1/invoices/{invoice}"): lambda s, a, p: s.update_invoice(a["invoice"], p),
    ("DELETE", "/v1/invoices/{invoice}"): lambda s, a, p: s.delete_invoice(a["invoice"]),
    ("POST", "/v1/invoices/{invoice}/finalize"): lambda s, a, p: s.finalize_invoice(
        a["invoice"], p
    ),
    ("POST", "/v1/invoices/{invoice}/pay"): lambda s, a, p: s.pay_invoice(a["invoice"], p),
    ("POST", "/v1/invoices/{invoice}/void"): lambda s, a, p: s.void_invoice(a["invoice"]),
    ("POST", "/v1/invoices/{invoice}/send"): lambda s, a, p: s.send_invoice(a["invoice"]),
    ("POST", "/v1/invoices/{invoice}/mark_uncollectible"): lambda s, a, p: s.mark_uncollectible(
        a["invoice"]
    ),
    ("GET", "/v1/invoices/{invoice}/lines"): lambda s, a, p: s.invoice_lines(a["invoice"], p),
    ("POST", "/v1/invoiceitems"): lambda s, a, p: s.create_invoice_item(p),
    ("GET", "/v1/invoiceitems"): lambda s, a, p: s.list_invoice_items(p),
    ("GET", "/v1/invoiceitems/{invoiceitem}"): _retrieve("invoiceitem", "invoiceitem"),
    ("POST", "/v1/invoiceitems/{invoiceitem}"): lambda s, a, p: s.update_invoice_item(
        a["invoiceitem"], p
    ),
    ("DELETE", "/v1/invoiceitems/{invoiceitem}"): lambda s, a, p: s.delete_invoice_item(
        a["invoiceitem"]
    ),
    ("GET", "/v1/invoice_payments"): _list_invoice_payments,
    ("GET", "/v1/invoice_payments/{invoice_payment}"): _retrieve(
        "invoice_payment", "invoice_payment"
    ),
    # money movements
    ("GET", "/v1/payment_intents"): _listing(
        "payment_intent", "/v1/payment_intents", {"customer": "customer"}
    ),
    ("GET", "/v1/payment_intents/{intent}"): _retrieve("payment_intent", "intent"),
    ("GET", "/v1/charges"): _listing(
        "charge", "/v1/charges", {"customer": "customer", "payment_intent": "payment_intent"}
    ),
    ("GET", "/v1/charges/{charge}"): _retrieve("charge", "charge"),
    ("POST", "/v1/charges/{charge}"): lambda s, a, p: s.update_charge(a["charge"], p),
    ("POST", "/v1/refunds"): lambda s, a, p: s.create_refund(p),
    ("GET", "/v1/refunds"): _listing(
        "refund", "/v1/refunds", {"charge": "charge", "payment_intent": "payment_intent"}
    ),
    ("GET", "/v1/refunds/{refund}"): _retrieve("refund", "refund"),
    ("POST", "/v1/refunds/{refund}"): lambda s, a, p: s.update_refund(a["refund"], p),
    ("GET", "/v1/balance_transactions"): _listing(
        "balance_transaction",
        "/v1/balance_transactions",
        {"type": "type", "source": "source", "currency": "currency"},
    ),
    ("GET", "/v1/balance_transactions/{id}"): _retrieve("balance_transaction", "id"),
    ("POST", "/v1/credit_notes"): lambda s, a, p: s.create_credit_note(p),
    ("GET", "/v1/credit_notes"): _listing(
        "credit_note", "/v1/credit_notes", {"customer": "customer", "invoice": "invoice"}
    ),
    ("GET", "/v1/credit_notes/{id}"): _retrieve("credit_note", "id"),
    ("POST", "/v1/credit_notes/{id}"): lambda s, a, p: s.update_credit_note(a["id"], p),
    ("POST", "/v1/credit_notes/{id}/void"): lambda s, a, p: s.void_credit_note(a["id"]),
    ("GET", "/v1/credit_notes/{credit_note}/lines"): lambda s, a, p: s.credit_note_lines(
        a["credit_note"], p
    ),
    ("GET", "/v1/disputes"): _listing(
        "dispute", "/v1/disputes", {"charge": "charge", "payment_intent": "payment_intent"}
    ),
    ("GET", "/v1/disputes/{dispute}"): _retrieve("dispute", "dispute"),
    ("POST", "/v1/disputes/{dispute}"): lambda s, a, p: s.update_dispute(a["dispute"], p),
    ("POST", "/v1/disputes/{dispute}/close"): lambda s, a, p: s.close_dispute(a["dispute"]),
    # ways to pay: cards saved by Checkout (setup mode), the customer portal
    ("POST", "/v1/payment_methods"): lambda s, a, p: s.create_payment_method(p),
    ("GET", "/v1/payment_methods"): lambda s, a, p: s.list_payment_methods(p),
    ("GET", "/v1/payment_methods/{payment_method}"): _retrieve("payment_method", "payment_method"),
    ("POST", "/v1/payment_methods/{payment_method}/attach"): lambda s, a, p: (
        s.attach_payment_method(a["payment_method"], p)
    ),
    ("POST", "/v1/payment_methods/{payment_method}/detach"): lambda s, a, p: (
        s.detach_payment_method(a["payment_method"])
    ),
    ("GET", "/v1/setup_intents"): _listing(
        "setup_intent", "/v1/setup_intents", {"customer": "customer"}
    ),
    ("GET", "/v1/setup_intents/{intent}"): _retrieve("setup_intent", "intent"),
    ("POST", "/v1/checkout/sessions"): lambda s, a, p: s.create_checkout_session(p),
    ("GET", "/v1/checkout/sessions"): _listing(
        "checkout.session", "/v1/checkout/sessions", {"customer": "customer", "status": "status"}
    ),
    ("GET", "/v1/checkout/sessions/{session}"): lambda s, a, p: s.checkout_session(a["session"]),
    ("POST", "/v1/checkout/sessions/{session}/expire"): lambda s, a, p: s.expire_checkout_session(
        a["session"]
    ),
    ("POST", "/v1/billing_portal/configurations"): lambda s, a, p: s.create_portal_configuration(p),
    ("GET", "/v1/billing_portal/configurations"): lambda s, a, p: s.list_portal_configurations(p),
    ("GET", "/v1/billing_portal/configurations/{configuration}"): _retrieve(
        "billing_portal.configuration", "configuration"
    ),
    ("POST", "/v1/billing_portal/sessions"): lambda s, a, p: s.create_portal_session(p),
    # events
    ("GET", "/v1/events"): _list_events,
    ("GET", "/v1/events/{id}"): _retrieve("event", "id"),
}


@dataclass(frozen=True)
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    params_type: type
    answer: Any
    handler: Handler


def compile_routes() -> list[_Route]:
    """The route table, literal paths before parameterised ones (``/search`` before ``/{id}``)."""
    sdk = schema.sdk_routes()
    routes = []
    for (method, template), handler in ROUTES.items():
        if (method, template) not in sdk:
            raise RuntimeError(f"{method} {template} is not a route of the pinned Stripe SDK")
        pattern = re.compile(
            "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
        )
        operation = sdk[(method, template)]
        routes.append(
            _Route(method, template, pattern, operation.params_type, operation.answer, handler)
        )
    routes.sort(key=lambda r: r.template.count("{"))
    return routes


@dataclass(frozen=True)
class _Answer:
    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = ()


class IdempotencyLedger:
    """Stripe's idempotency: a key replays its first answer, and only for the same request."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[str, _Answer]] = {}

    def lookup(self, account: str, key: str, fingerprint: str) -> _Answer | None:
        entry = self._entries.get((account, key))
        if entry is None:
            return None
        stored_fingerprint, answer = entry
        if stored_fingerprint != fingerprint:
            error = StripeError(
                400,
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.",
            )
            return _Answer(400, error.body())
        return _Answer(
            answer.status, answer.body, (*answer.headers, ("Idempotent-Replayed", "true"))
        )

    def record(self, account: str, key: str, fingerprint: str, answer: _Answer) -> None:
        self._entries[(account, key)] = (fingerprint, answer)

    def forget(self) -> None:
        """Stripe prunes a key after 24 hours: from then on, the same key makes a new object."""
        self._entries.clear()


@dataclass(frozen=True)
class Received:
    """One API request as the stand-in received it (for the contract test of every call): its
    route, its parameters (validated, or raw when validation refused them) and the refusal."""

    method: str
    template: str
    params: Params
    refused: str | None


class StandInHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], standin: StandIn) -> None:
        self.standin = standin
        self.routes = compile_routes()
        self.ledger = IdempotencyLedger()
        self.received: list[Received] = []
        super().__init__(address, _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One buffered write per answer and no Nagle: otherwise headers and body leave in two
    # packets and delayed ACKs add ~40 ms to every call.
    wbufsize = -1
    disable_nagle_algorithm = True
    server: StandInHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the store, not the access log."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- plumbing -----------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        answer: _Answer | None
        if url.path.startswith("/_standin/"):
            answer = self._control(method, url.path, body)
        else:
            answer = self._api(method, url.path, url.query, body)
        if answer is None:  # injected timeout: hang up without an answer
            self.close_connection = True
            return
        self._send(answer)

    def _send(self, answer: _Answer) -> None:
        try:
            self._write(answer)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the caller is gone (killed while we worked)

    def _write(self, answer: _Answer) -> None:
        if isinstance(answer.body, str):
            payload = answer.body.encode()
            content_type = "text/html; charset=utf-8"
        else:
            payload = json.dumps(answer.body, indent=2).encode()
            content_type = "application/json"
        self.send_response(answer.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    # -- Stripe API ---------------------------------------------------------------------------

    def _api(self, method: str, path: str, query: str, body: str) -> _Answer | None:
        standin = self.server.standin
        request_id = "req_" + secrets.token_hex(7)
        base_headers = (("Request-Id", request_id), ("Stripe-Version", API_VERSION))
        authorization = self.headers.get("Authorization", "")
        if not authorization.startswith("Bearer ") or len(authorization) <= len("Bearer "):
            error = StripeError(
                401,
                "invalid_request_error",
                "You did not provide an API key. Provide it as a Bearer token.",
            )
            return _Answer(401, error.body(), base_headers)
        standin.faults.wait_out_delay()
        standin.faults.wait_out_hold(method, path)
        fault = standin.faults.take(method, path)
        if fault is not None and fault.status == "lost":
            # Done here, never heard there: the answer is dropped with the connection.
            self._answer_api(method, path, query, body, authorization, base_headers)
            return None
        if fault is not None:
            if fault.status == "timeout":
                time.sleep(standin.faults.timeout_seconds)
                return None
            status, error_body, extra = fault.response()
            return _Answer(status, error_body, base_headers + tuple(extra.items()))
        return self._answer_api(method, path, query, body, authorization, base_headers)

    def _answer_api(
        self,
        method: str,
        path: str,
        query: str,
        body: str,
        authorization: str,
        base_headers: tuple[tuple[str, str], ...],
    ) -> _Answer:
        standin = self.server.standin
        request_id = dict(base_headers)["Request-Id"]
        route, args = self._match(method, path)
        if route is None:
            error = invalid(f"Unrecognized request URL ({method}: {path}).")
            return _Answer(404, error.body(), base_headers)
        try:
            raw = schema.decode_form(query if method in ("GET", "DELETE") else body)
        except StripeError as error:
            return _Answer(error.status, error.body(), base_headers)
        key = self.headers.get("Idempotency-Key") if method == "POST" else None
        headers = base_headers + ((("Idempotency-Key", key),) if key else ())
        store = standin.store
        with store.lock:
            fingerprint = json.dumps([method, path, raw], sort_keys=True)
            if key:
                replay = self.server.ledger.lookup(authorization, key, fingerprint)
                if replay is not None:
                    return _Answer(replay.status, replay.body, base_headers + replay.headers)
            try:
                params = schema.validate(route.params_type, raw)
                tree = expansion.check(route.answer, params.get("expand", []))
            except StripeError as error:
                self.server.received.append(Received(method, route.template, raw, error.message))
                # Like Stripe, a request that fails validation is not saved under its key.
                return _Answer(error.status, error.body(), headers)
            self.server.received.append(Received(method, route.template, params, None))
            answer = self._run(store, route, args, params, tree, request_id, key, headers)
            if key:
                self.server.ledger.record(authorization, key, fingerprint, answer)
            return answer

    def _run(
        self,
        store: Store,
        route: _Route,
        args: dict[str, str],
        params: Params,
        tree: expansion.Tree,
        request_id: str,
        key: str | None,
        headers: tuple[tuple[str, str], ...],
    ) -> _Answer:
        try:
            with store.request_scope(request_id, key):
                result = route.handler(store, args, params)
            answer = expansion.present(copy.deepcopy(result), tree, store.find)
        except StripeError as error:
            return _Answer(error.status, error.body(), headers)
        except Exception:
            # A stand-in bug: answer like Stripe's 500 so the caller sees an APIError.
            log.exception("standin_internal_error", route=route.template)
            internal = StripeError(500, "api_error", "Stand-in internal error (see its log).")
            return _Answer(500, internal.body(), headers)
        return _Answer(200, answer, headers)

    def _match(self, method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
        for route in self.server.routes:
            if route.method == method and (match := route.pattern.match(path)):
                return route, match.groupdict()
        return None, {}

    # -- control ------------------------------------------------------------------------------

    def _control(self, method: str, path: str, body: str) -> _Answer:
        standin = self.server.standin
        try:
            data = json.loads(body) if body.strip() else {}
            result = self._control_action(standin, method, path.removeprefix("/_standin"), data)
        except StripeError as error:
            return _Answer(error.status, error.body())
        except (KeyError, TypeError, ValueError) as exc:
            return _Answer(400, {"error": {"type": "control_error", "message": str(exc)}})
        if result is None:
            return _Answer(404, {"error": {"type": "control_error", "message": "no such route"}})
        return _Answer(200, result)

    def _control_action(
        self, standin: StandIn, method: str, path: str, data: dict[str, Any]
    ) -> Any:
        hooks = standin.webhooks
        if (method, path) == ("GET", "/health"):
            return {"ok": True, "api_version": API_VERSION, "base_url": standin.base_url}
        if (method, path) == ("GET", "/counts"):
            return standin.counts()
        if method == "GET" and path.startswith("/objects/"):
            return standin.objects(path.removeprefix("/objects/"))
        if (method, path) == ("POST", "/faults"):
            standin.fail_next(**data)
            return {"ok": True}
        if (method, path) == ("DELETE", "/faults"):
            standin.faults.clear()
            return {"ok": True}
        if (method, path) == ("POST", "/outage"):
            standin.start_outage(**data)
            return {"ok": True}
        if (method, path) == ("DELETE", "/outage"):
            standin.end_outage()
            return {"ok": True}
        if (method, path) == ("POST", "/delay"):
            standin.faults.delay_answers(float(data["seconds"]))
            return {"ok": True}
        if (method, path) == ("POST", "/clock"):
            standin.set_time(data["now"])
            return {"now": standin.store.now()}
        if method == "POST" and path.startswith("/dashboard/"):
            action = path.removeprefix("/dashboard/")
            if action not in DASHBOARD_ACTIONS:
                return None
            return getattr(standin.dashboard, action)(**data)
        if (method, path) == ("GET", "/webhooks"):
            return {
                "url": hooks.url,
                "held": hooks.held(),
                "undelivered": hooks.undelivered(),
                "deliveries": [vars(d) for d in hooks.deliveries()],
            }
        if method == "POST" and path.startswith("/webhooks/"):
            return self._webhook_action(standin, path.removeprefix("/webhooks/"), data)
        if method == "GET" and path.startswith(("/hosted/", "/checkout/", "/portal/")):
            return self._hosted_page(standin, path.rsplit("/", 1)[-1])
        if method == "POST" and path.count("/") == 3:
            _, page, object_id, action = path.split("/")
            name = HOSTED_ACTIONS.get((page, action))
            if name is None:
                return None
            return getattr(standin.hosted, name)(object_id, **data)
        return None

    @staticmethod
    def _webhook_action(standin: StandIn, action: str, data: dict[str, Any]) -> Any:
        hooks = standin.webhooks
        if action == "configure":
            hooks.configure(**data)
            return {"ok": True}
        if action == "url":
            hooks.url = data.get("url")
            return {"url": hooks.url}
        if action == "hold":
            hooks.hold()
            return {"ok": True}
        if action == "release":
            return {"sent": hooks.release(**data)}
        if action == "flush":
            hooks.flush()
            return {"ok": True}
        if action == "resend":
            if "event_id" in data:
                hooks.resend(data["event_id"], copies=data.get("copies", 1))
                return {"sent": data.get("copies", 1)}
            return {"sent": hooks.resend_undelivered()}
        return None

    @staticmethod
    def _hosted_page(standin: StandIn, name: str) -> str | None:
        object_id = name.removesuffix(".pdf")
        obj = standin.hosted.page(object_id)
        if obj is None:
            return None
        summary = {
            k: obj.get(k)
            for k in (
                "id",
                "number",
                "status",
                "amount_due",
                "amount",
                "amount_paid",
                "currency",
                "customer",
                "total",
                "mode",
                "due_date",
                "return_url",
            )
        }
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in summary.items()
            if v is not None
        )
        kind = html.escape(obj.get("object", "object"))
        return f"<!doctype html><title>{kind} {html.escape(object_id)}</title><table>{rows}</table>"
