"""Finding what an earlier attempt of a push made in Stripe: by our tags, never a dead object."""

from typing import Any

import stripe

from webhooks.outbox import _made_for


def _obj(**values: Any) -> stripe.StripeObject:
    return stripe.StripeObject.construct_from(values, "sk_test_x")


def test_the_object_tagged_with_our_id_is_found_among_others() -> None:
    ours = _obj(id="cn_2", status="issued", metadata={"kefu_credit_note_id": "n-1", "x": "y"})
    found = _made_for(
        [
            _obj(id="cn_1", status="issued", metadata={"kefu_credit_note_id": "n-0"}),
            _obj(id="cn_0", status="issued", metadata={}),
            ours,
        ],
        {"kefu_credit_note_id": "n-1"},
    )
    assert found is ours


def test_a_void_or_failed_object_is_not_taken_as_the_earlier_attempts() -> None:
    tags = {"kefu_credit_note_id": "n-1"}
    void_note = _obj(id="cn_1", status="void", metadata=tags)
    failed = _obj(id="re_1", status="failed", metadata=tags)
    canceled = _obj(id="re_2", status="canceled", metadata=tags)
    assert _made_for([void_note, failed, canceled], tags) is None
    succeeded = _obj(id="re_3", status="succeeded", metadata=tags)
    assert _made_for([failed, succeeded], tags) is succeeded


def test_objects_without_status_or_metadata_are_matched_by_tags_alone() -> None:
    customer = _obj(id="cus_1", metadata={"kefu_merchant_id": "m-1"})
    bare = _obj(id="cus_2")
    assert _made_for([bare, customer], {"kefu_merchant_id": "m-1"}) is customer
    assert _made_for([bare], {"kefu_merchant_id": "m-1"}) is None
