"""Production mode refuses what is unsafe, each time in one line that says what to set, and
names what is off when a process starts."""

import pytest

from service.command import startup_warnings
from service.settings import Settings, SettingsError

PRODUCTION = {"BILLING_ENV": "production", "DATABASE_URL": "postgresql://billing@db/billing"}
SELLER = {
    "BILLING_SELLER_LEGAL_NAME": "杭州客服外包科技有限公司",
    "BILLING_SELLER_ADDRESS": "杭州市西湖区文三路 100 号 | Hangzhou 310012",
    "BILLING_SELLER_TAX_ID": "91330106MA2H0KEFU1",
}


def test_production_refuses_the_embedded_database_unless_allowed() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"BILLING_ENV": "production"})
    assert "DATABASE_URL" in str(refused.value)
    assert "BILLING_ALLOW_EMBEDDED_DATABASE=1" in str(refused.value)
    assert "\n" not in str(refused.value)
    allowed = Settings.from_env(
        {"BILLING_ENV": "production", "BILLING_ALLOW_EMBEDDED_DATABASE": "1"}
    )
    assert allowed.database.is_embedded
    assert any("embedded PostgreSQL" in w for w in startup_warnings(allowed))


def test_development_runs_on_the_embedded_database() -> None:
    assert Settings.from_env({}).database.is_embedded


def test_production_refuses_a_stripe_key_without_its_webhook_secret() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({**PRODUCTION, "STRIPE_API_KEY": "sk_live_x"})
    assert "set it to the signing secret" in str(refused.value)
    assert "STRIPE_WEBHOOK_SECRET" in str(refused.value)
    settings = Settings.from_env(
        {**PRODUCTION, **SELLER, "STRIPE_API_KEY": "sk_live_x", "STRIPE_WEBHOOK_SECRET": "whsec_x"}
    )
    assert startup_warnings(settings) == []


def test_production_turns_test_clocks_off_unless_allowed() -> None:
    assert not Settings.from_env(PRODUCTION).allows_test_clocks
    allowed = Settings.from_env({**PRODUCTION, "BILLING_ALLOW_TEST_CLOCKS": "1"})
    assert allowed.allows_test_clocks
    assert Settings.from_env({"BILLING_ENV": "development"}).allows_test_clocks
    with pytest.raises(SettingsError, match="BILLING_ALLOW_TEST_CLOCKS must be 1 or 0"):
        Settings.from_env({**PRODUCTION, "BILLING_ALLOW_TEST_CLOCKS": "maybe"})


def test_production_start_names_what_is_off() -> None:
    warnings = startup_warnings(Settings.from_env(PRODUCTION))
    assert any(w.startswith("STRIPE_API_KEY is not set") for w in warnings)
    assert any(w.startswith("STRIPE_WEBHOOK_SECRET is not set") for w in warnings)


def test_seller_details_come_from_settings_and_production_names_them_missing() -> None:
    seller = Settings.from_env(SELLER).seller
    assert seller.legal_name == "杭州客服外包科技有限公司"
    assert seller.address == ("杭州市西湖区文三路 100 号", "Hangzhou 310012")
    assert seller.tax_id == "91330106MA2H0KEFU1"
    assert any(
        w.startswith("BILLING_SELLER_LEGAL_NAME")
        for w in startup_warnings(Settings.from_env(PRODUCTION))
    )
    with pytest.raises(SettingsError, match="BILLING_SELLER_TAX_ID must not hold control"):
        Settings.from_env({"BILLING_SELLER_TAX_ID": "913\x00"})
