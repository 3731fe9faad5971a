from httpx import AsyncClient

from tests.integration.conftest import Tenant


async def test_operator_creates_and_reads_a_merchant(client: AsyncClient, operator: Tenant) -> None:
    created = await client.post(
        "/v1/merchants",
        json={"name": "卡盟小铺", "contact_email": "boss@kameng.cn", "timezone": "Asia/Shanghai"},
        headers=operator.headers,
    )
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "卡盟小铺"
    assert body["currency"] == "CNY"
    assert body["status"] == "active"
    fetched = await client.get(f"/v1/merchants/{body['id']}", headers=operator.headers)
    assert fetched.json() == body


async def test_merchant_edits_itself(client: AsyncClient, tenant: Tenant) -> None:
    response = await client.patch(
        "/v1/merchants/me",
        json={"name": "Renamed", "timezone": "Asia/Tokyo"},
        headers=tenant.headers,
    )
    assert response.status_code == 200
    me = (await client.get("/v1/merchants/me", headers=tenant.headers)).json()
    assert me["name"] == "Renamed"
    assert me["timezone"] == "Asia/Tokyo"
    assert me["contact_email"] == "ops@shop.cn"  # unsent fields keep their values


async def test_merchant_cannot_change_its_currency(client: AsyncClient, tenant: Tenant) -> None:
    response = await client.patch(
        "/v1/merchants/me", json={"currency": "USD"}, headers=tenant.headers
    )
    assert response.status_code == 400


async def test_merchant_key_cannot_use_operator_routes(client: AsyncClient, tenant: Tenant) -> None:
    created = await client.post(
        "/v1/merchants", json={"name": "x", "contact_email": "a@b.cn"}, headers=tenant.headers
    )
    assert created.status_code == 403
    read = await client.get(f"/v1/merchants/{tenant.merchant_id}", headers=tenant.headers)
    assert read.status_code == 403


async def test_the_platform_tenant_exists_but_is_no_customer(
    client: AsyncClient, operator: Tenant
) -> None:
    from service.db.tables import Merchant
    from service.tenancy.platform import PLATFORM_MERCHANT_ID

    # The migration made the row that platform-owned rows hang from ...
    assert await Merchant.exists().where(Merchant.id == PLATFORM_MERCHANT_ID)
    # ... yet it is never shown as a merchant, nor can a key be minted for it.
    read = await client.get(f"/v1/merchants/{PLATFORM_MERCHANT_ID}", headers=operator.headers)
    assert read.status_code == 404
    minted = await client.post(
        "/v1/api-keys",
        json={
            "role": "merchant",
            "merchant_id": str(PLATFORM_MERCHANT_ID),
            "scopes": ["billing:read"],
        },
        headers=operator.headers,
    )
    assert minted.status_code == 404
