"""`billing demo`, the real command on the test database, with the Stripe stand-in."""

import os
import subprocess

from tests.e2e.conftest import BILLING


def test_demo_ends_with_invoices_paid_and_a_clean_reconciliation(fresh_database_url: str) -> None:
    # A database of its own: the demo pushes the catalog to its own Stripe stand-in, and that
    # mapping must not leak into the other tests' Stripe.
    done = subprocess.run(
        [BILLING, "demo"],
        capture_output=True,
        text=True,
        timeout=240,
        env={
            **os.environ,
            "DATABASE_URL": fresh_database_url,
            "BILLING_LOG_LEVEL": "WARNING",
            "COLUMNS": "160",
        },
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "Stripe sync: everything agrees" in out
    assert "Late usage for 2026-09: +500 orders" in out
    assert "[paid]" in out
    tail = out[out.index("reconciliation") :]
    assert "0 mismatch(es)" in tail
    assert out.rindex("reconciliation") > out.rindex("KB-2026-")  # the summary comes last
