"""Production mode refuses what is unsafe, each time in one line that says what to set, and
names what is off when a process starts."""

import pytest

from service.command import startup_warnings
from service.settings import Settings, SettingsError

PRODUCTION = {"BILLING_ENV": "production", "DATABASE_URL": "postgresql://billing@db/billing"}


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
        {**PRODUCTION, "STRIPE_API_KEY": "sk_live_x", "STRIPE_WEBHOOK_SECRET": "whsec_x"}
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
