"""``billing serve`` on a fresh database: migrates, prints an operator key once, serves the API."""

import json

import httpx

from tests.e2e.conftest import ServerProcess, printed_key, start_server


def test_first_start_prints_an_operator_key_and_serves(server: ServerProcess) -> None:
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200
    assert httpx.get(f"{server.base_url}/readyz").json()["database"] == "ok"
    key = printed_key(server.output)
    assert f"{server.base_url}/schema" in "".join(server.output)
    created = httpx.post(
        f"{server.base_url}/v1/merchants",
        json={"name": "淘卡小店", "contact_email": "a@b.cn"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert created.status_code == 201
    assert created.json()["name"] == "淘卡小店"


def test_second_start_reuses_the_database_and_prints_no_new_key(
    fresh_database_url: str,
) -> None:
    first = start_server(fresh_database_url)
    key = printed_key(first.output)
    assert first.stop() == 0
    second = start_server(fresh_database_url)
    try:
        assert "kbo_" not in "".join(second.output)
        me = httpx.get(f"{second.base_url}/v1/api-keys", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200
    finally:
        assert second.stop() == 0


def test_logs_never_show_the_key(server: ServerProcess) -> None:
    key = printed_key(server.output)
    httpx.get(f"{server.base_url}/v1/api-keys", headers={"Authorization": f"Bearer {key}"})
    server.stop()
    logged = [line for line in server.output if line.startswith("{")]
    assert any(json.loads(line).get("path") == "/v1/api-keys" for line in logged)
    assert all(key not in line for line in logged)
