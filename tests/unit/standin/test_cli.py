"""``python -m webhooks.standin`` runs the stand-in standalone until terminated."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_module_runs_standalone_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "webhooks.standin", "--port", "0", "--webhook-secret", "whsec_cli"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        assert first_line.startswith("Stripe stand-in at http://127.0.0.1:")
        base_url = first_line.rsplit(" ", 1)[-1].strip()
        health = httpx.get(f"{base_url}/_standin/health", trust_env=False, timeout=5)
        assert health.json()["ok"] is True
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
