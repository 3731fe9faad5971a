"""Where payment links point: the public address (set, or where `billing serve` listens) and the
pages Stripe sends merchants back to."""

from __future__ import annotations

import pytest

from service.settings import Settings, SettingsError


def test_links_follow_where_the_server_listens_unless_a_public_url_is_set() -> None:
    listening = Settings.from_env({"BILLING_PORT": "9001"})
    assert listening.payments.public_url == "http://127.0.0.1:9001"
    served = listening.served_at("0.0.0.0", 7000).payments
    assert served.public_url == "http://0.0.0.0:7000"
    assert served.setup_success_url == "http://0.0.0.0:7000/pay/setup/complete"
    assert served.portal_return_url == "http://0.0.0.0:7000/pay/portal/return"

    public = Settings.from_env(
        {
            "BILLING_PUBLIC_URL": "https://billing.kefu.example/",
            "BILLING_PAYMENT_SETUP_SUCCESS_URL": "https://app.kefu.example/card-saved",
        }
    ).served_at("0.0.0.0", 7000)
    assert public.payments.public_url == "https://billing.kefu.example"
    assert public.payments.setup_success_url == "https://app.kefu.example/card-saved"
    assert public.payments.setup_cancel_url == "https://billing.kefu.example/pay/setup/canceled"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BILLING_PUBLIC_URL", "billing.kefu.example"),
        ("BILLING_PUBLIC_URL", "ftp://billing.kefu.example"),
        ("BILLING_PORTAL_RETURN_URL", "https://app.kefu.example/a b"),
        ("BILLING_PAYMENT_SETUP_LINK_DAYS", "0"),
    ],
)
def test_an_address_or_a_lifetime_that_cannot_work_is_refused_naming_the_variable(
    name: str, value: str
) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
