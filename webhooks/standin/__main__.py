"""``python -m webhooks.standin --port 12111 --webhook-url URL``: run the stand-in standalone."""

from __future__ import annotations

import argparse
import signal
import threading

from webhooks.standin.runner import StandIn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m webhooks.standin", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    parser.add_argument("--port", type=int, default=12111, help="0 picks a free port")
    parser.add_argument("--webhook-url", default=None, help="where to POST signed events")
    parser.add_argument(
        "--webhook-secret", default=None, help="endpoint secret (default: a fresh whsec_...)"
    )
    args = parser.parse_args(argv)
    standin = StandIn.start(
        host=args.host,
        port=args.port,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
    )
    print(f"Stripe stand-in at {standin.base_url}", flush=True)
    if args.webhook_url:
        print(f"webhooks to {args.webhook_url}", flush=True)
        if args.webhook_secret is None:
            # The user asked for a generated secret and needs it to configure the receiver.
            print(f"webhook secret {standin.webhook_secret}", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()


if __name__ == "__main__":
    main()
