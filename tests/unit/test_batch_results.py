"""A batch's per-event results skip `Output`'s normalizing pass; that is only right while they
hold nothing it would change."""

from __future__ import annotations

from service.usage.schemas import EventResultOut
from service.wire import _special_fields


def test_a_batch_result_has_no_decimal_instant_or_free_form_field_to_normalize() -> None:
    assert _special_fields(EventResultOut) == ((), (), ())
