"""Request decoding and validation against the SDK's params TypedDicts, without a server."""

from __future__ import annotations

from decimal import Decimal

import pytest
import stripe
from stripe.params import (
    CreditNoteCreateParams,
    CustomerListParams,
    InvoiceCreateParams,
    InvoiceItemCreateParams,
)

from webhooks.standin import schema


def check(params_type: type, encoded: str) -> dict:
    return schema.validate(params_type, schema.decode_form(encoded))


def error_of(params_type: type, encoded: str) -> dict:
    with pytest.raises(schema.StripeError) as caught:
        check(params_type, encoded)
    assert caught.value.status == 400
    return caught.value.body()["error"]


def test_form_encoding_decodes_to_nested_values_of_the_sdk_types() -> None:
    params = check(
        InvoiceItemCreateParams,
        "amount=100&currency=usd&metadata[line_id]=L1&period[start]=1&period[end]=2"
        "&quantity_decimal=1.5&expand[]=invoice&expand[]=customer&discountable=false",
    )
    assert params == {
        "amount": 100,
        "currency": "usd",
        "metadata": {"line_id": "L1"},
        "period": {"start": 1, "end": 2},
        "quantity_decimal": Decimal("1.5"),
        "expand": ["invoice", "customer"],
        "discountable": False,
    }


def test_indexed_arrays_of_hashes_become_lists() -> None:
    params = check(
        CreditNoteCreateParams,
        "invoice=in_1&lines[1][type]=custom_line_item&lines[1][unit_amount]=5"
        "&lines[0][type]=invoice_line_item&lines[0][invoice_line_item]=il_1",
    )
    assert [line["type"] for line in params["lines"]] == ["invoice_line_item", "custom_line_item"]


def test_numeric_metadata_keys_stay_keys() -> None:
    assert check(InvoiceItemCreateParams, "metadata[0]=a")["metadata"] == {"0": "a"}


def test_unknown_parameter_is_named_with_its_full_path() -> None:
    error = error_of(
        CreditNoteCreateParams, "invoice=in_1&lines[0][type]=custom_line_item&lines[0][colour]=x"
    )
    assert error == {
        "type": "invalid_request_error",
        "message": "Received unknown parameter: lines[0][colour]",
        "param": "lines[0][colour]",
        "code": "parameter_unknown",
    }


def test_request_options_are_not_parameters() -> None:
    assert error_of(InvoiceCreateParams, "idempotency_key=k")["code"] == "parameter_unknown"


def test_missing_required_nested_parameter() -> None:
    error = error_of(InvoiceItemCreateParams, "period[start]=1")
    assert (error["code"], error["param"]) == ("parameter_missing", "period[end]")


def test_missing_required_top_level_parameter() -> None:
    error = error_of(CreditNoteCreateParams, "amount=5")
    assert (error["code"], error["param"]) == ("parameter_missing", "invoice")


def test_enum_outside_the_listed_values_is_rejected() -> None:
    error = error_of(InvoiceCreateParams, "collection_method=by_carrier_pigeon")
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "collection_method"
    assert "charge_automatically" in error["message"]


def test_free_strings_and_empty_unset_values_are_accepted() -> None:
    assert check(InvoiceItemCreateParams, "tax_code=&metadata=") == {"tax_code": "", "metadata": ""}


@pytest.mark.parametrize(
    ("encoded", "code"),
    [("amount=ten", "parameter_invalid_integer"), ("amount[x]=1", None)],
)
def test_scalars_are_type_checked(encoded: str, code: str | None) -> None:
    assert error_of(InvoiceItemCreateParams, encoded).get("code") == code


def test_booleans_must_be_true_or_false() -> None:
    assert error_of(InvoiceCreateParams, "auto_advance=yes")["param"] == "auto_advance"


def test_union_of_hash_and_integer_takes_either() -> None:
    assert check(CustomerListParams, "created[gte]=5&limit=3") == {
        "created": {"gte": 5},
        "limit": 3,
    }
    assert check(CustomerListParams, "created=5") == {"created": 5}


def test_sdk_routes_are_read_from_the_sdk_services() -> None:
    routes = schema.sdk_routes()
    pay = routes[("POST", "/v1/invoices/{invoice}/pay")]
    assert pay.params_type.__name__ == "InvoicePayParams"
    assert pay.answer is stripe.Invoice
    assert routes[("GET", "/v1/customers")].params_type is CustomerListParams
    assert routes[("GET", "/v1/customers")].answer == stripe.ListObject[stripe.Customer]
