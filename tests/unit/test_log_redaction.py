"""`redact` on its own: its quick test for "could this line hold a secret?" never lets a secret
through that the full pattern would have blanked, and the credentials a person may type in any
case or spacing are blanked whole."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from service.observability import logging as billing_logging

# Pieces that make up secrets and near-secrets, in several cases, among ordinary text.
_PIECES = st.sampled_from(
    [
        "kbm_AbCdEfGh1234",
        "kbo_AbCdEfGh1234",
        "sk_test_abcd",
        "rk_live_abcd",
        "whsec_abcd1234",
        "ps_" + "0123456789abcdef" * 2 + "_abcdefgh12",
        "kbm_",
        "kbo_",
        "KBM_",
        "sk_test_",
        "sk_live_",
        "rk_live_",
        "SK_TEST_",
        "whsec_",
        "ps_",
        "0123456789abcdef" * 2,
        "_",
        "Bearer ",
        "BEARER\t",
        "bEaReR  ",
        "kefu_finance_session=",
        "KEFU_FINANCE_SESSION=",
        "Kefu_Finance_Session=",
        "abcDEF123",
        "xyz=",
        " ",
        '"',
        ";",
        "\u212a",  # Kelvin sign: lower-cases to "k"
        "\u017f",  # long s: matches "s" in re's Unicode case folding
        "\u0130",  # capital I with dot: lower-cases to two characters
    ]
)


@settings(max_examples=600)
@given(st.lists(st.one_of(_PIECES, st.text(max_size=6)), max_size=14).map("".join))
def test_the_quick_check_never_skips_a_line_the_pattern_would_change(text: str) -> None:
    assert billing_logging.redact(text) == billing_logging._SECRET_VALUES.sub(
        billing_logging._blank, text
    )


def test_credentials_in_any_case_and_spacing_are_blanked_whole() -> None:
    lines = {
        "Authorization: BeArEr\tabc123token": "Authorization: BeArEr\t***",
        "auth=bearer  tok_en-value; next": "auth=bearer  ***; next",
        "Cookie: KEFU_FINANCE_SESSION=s3cr3t; other=1": "Cookie: KEFU_FINANCE_SESSION=***; other=1",
        "key kbm_AbCdEfGh12345678 used": "key kbm_*** used",
        "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc": "stripe sk_***",
        "operator kbo_AbCdEfGh12345678 used": "operator kbo_*** used",
        "restricted rk_test_4eC39HqLyjWD": "restricted rk_***",
        "restricted rk_live_4eC39HqLyjWD": "restricted rk_***",
        "test key sk_test_4eC39HqLyjWD": "test key sk_***",
        "secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw": "secret whsec_***",
        "GET /pay/ps_" + "0123456789abcdef" * 2 + "_AbCdEf12345 200": "GET /pay/ps_*** 200",
    }
    for line, expected in lines.items():
        assert billing_logging.redact(line) == expected


def test_a_line_without_secrets_is_left_as_it_is() -> None:
    line = '{"event":"request","path":"/v1/usage/events","status":201,"duration_ms":1.23}'
    assert billing_logging.redact(line) == line
