"""``StandIn``: start the stand-in (store, HTTP server, webhook sender) and steer it.

standin = StandIn.start(webhook_url="http://127.0.0.1:8000/webhooks/stripe")
client = standin.sdk_client()          # a stripe.StripeClient pointed at it
standin.fail_next(2, status=500)       # or start_outage() / end_outage()
standin.dashboard.refund_charge("ch_...")
standin.hosted.complete_checkout("cs_...")   # the customer saves a card on the Checkout page
standin.count("customer")
standin.stop()
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from typing import Any

import stripe

from webhooks.standin.control import Dashboard, FaultInjector, FaultStatus, Hold, HostedPages
from webhooks.standin.server import Received, StandInHTTPServer
from webhooks.standin.state import Obj, Store
from webhooks.standin.webhook_sender import WebhookSender


class StandIn:
    """A running stand-in on loopback. Use ``StandIn.start(...)``; stop with ``stop()``."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        webhook_url: str | None,
        webhook_secret: str,
        now: Callable[[], float] | None,
        timeout_seconds: float,
    ) -> None:
        self.webhook_secret = webhook_secret
        self.webhooks = WebhookSender(webhook_url, webhook_secret, on_delivered=self._delivered)
        store_kwargs: dict[str, Any] = {"on_event": self.webhooks.enqueue}
        if now is not None:
            store_kwargs["now"] = now
        self.store = Store(**store_kwargs)
        self.faults = FaultInjector(timeout_seconds=timeout_seconds)
        self.dashboard = Dashboard(self.store)
        self.hosted = HostedPages(self.store)
        self._server = StandInHTTPServer((host, port), self)
        bound_port = self._server.server_address[1]
        self.base_url = f"http://{host}:{bound_port}"
        self.store.base_url = self.base_url
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits at most this long
            name="standin-http",
            daemon=True,
        )

    @classmethod
    def start(
        cls,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        now: Callable[[], float] | None = None,
        timeout_seconds: float = 1.0,
    ) -> StandIn:
        """Start serving in background threads. ``port=0`` picks a free port.

        ``webhook_secret`` defaults to a fresh ``whsec_...``; ``now`` replaces the clock used for
        ``created`` and other timestamps; ``timeout_seconds`` is how long an injected timeout
        holds the connection before hanging up.
        """
        standin = cls(
            host=host,
            port=port,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret or "whsec_" + secrets.token_hex(16),
            now=now,
            timeout_seconds=timeout_seconds,
        )
        standin.webhooks.start()
        standin._thread.start()
        return standin

    def stop(self) -> None:
        self.faults.clear()  # let held requests go, so the server's threads can end
        self._server.shutdown()
        self._server.server_close()
        self.webhooks.stop()

    def __enter__(self) -> StandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- SDK ----------------------------------------------------------------------------------

    def sdk_client(
        self, api_key: str = "sk_test_standin", *, max_network_retries: int = 0, **kwargs: Any
    ) -> stripe.StripeClient:
        """A ``stripe.StripeClient`` whose every base address is this stand-in."""
        return stripe.StripeClient(
            api_key,
            base_addresses={
                "api": self.base_url,
                "files": self.base_url,
                "connect": self.base_url,
                "meter_events": self.base_url,
            },
            max_network_retries=max_network_retries,
            **kwargs,
        )

    # -- failures -----------------------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        *,
        status: FaultStatus = 500,
        path_prefix: str | None = None,
        method: str | None = None,
        should_retry: bool | None = None,
    ) -> None:
        """The next ``count`` API requests (matching) fail; state is left untouched."""
        self.faults.fail_next(
            count, status=status, path_prefix=path_prefix, method=method, should_retry=should_retry
        )

    def hold_next(self, *, method: str | None = None, path_prefix: str | None = None) -> Hold:
        """Hold the next matching API request until ``release()``; ``arrived`` tells when it came.
        The request is then carried out as usual, whether its caller still waits or not."""
        return self.faults.hold_next(method=method, path_prefix=path_prefix)

    def start_outage(self, *, status: FaultStatus = 500, path_prefix: str | None = None) -> None:
        self.faults.start_outage(status=status, path_prefix=path_prefix)

    def end_outage(self) -> None:
        self.faults.end_outage()

    def delay_answers(self, seconds: float) -> None:
        """Hold every API request ``seconds`` before handling it, as a slow Stripe would."""
        self.faults.delay_answers(seconds)

    def forget_idempotency_keys(self) -> None:
        """As if 24 hours had passed: Stripe no longer knows any idempotency key used so far."""
        self._server.ledger.forget()

    # -- observation --------------------------------------------------------------------------

    def count(self, kind: str) -> int:
        """How many objects of ``kind`` (Stripe ``object`` name) were ever created."""
        with self.store.lock:
            return self.store.count(kind)

    def counts(self) -> dict[str, int]:
        with self.store.lock:
            return {kind: self.store.count(kind) for kind in sorted(self.store._tables)}

    def objects(self, kind: str) -> list[Obj]:
        """Snapshots of all objects of ``kind``, oldest first."""
        return self.store.all(kind)

    def received(self) -> list[Received]:
        """Every API request received so far that reached a route (replays excepted), oldest
        first, with the parameters it carried."""
        with self.store.lock:
            return list(self._server.received)

    def events(self, event_type: str | None = None) -> list[Obj]:
        """Recorded events, oldest first, optionally of one type."""
        return [e for e in self.store.all("event") if event_type in (None, e["type"])]

    def set_time(self, now: float) -> None:
        """Freeze the stand-in's clock at ``now`` (unix seconds)."""
        self.store.set_clock(lambda: now)

    def _delivered(self, event_id: str) -> None:
        with self.store.lock:
            event = self.store.table("event").get(event_id)
            if event is not None:
                event["pending_webhooks"] = 0
