"""What crosses the HTTP boundary: strict input Structs, output Structs, and the one decoder.

Every JSON body is read by `decode_body` (Litestar's ``Request.json`` and the single-event hot
path alike): a body that is not JSON, not UTF-8, nested beyond what the decoder can follow, or
sent as another media type is refused here with a problem that says what is wrong and where. Every
decoded value then passes `value_problem`, the one rule for hostile values: free-form JSON
nested at most ``BILLING_JSON_MAX_DEPTH`` levels (typed fields cannot nest), no NUL in text
(PostgreSQL cannot store it), instants and days inside `MIN_INSTANT` … `MAX_INSTANT` (the
calendar arithmetic of periods and months must never overflow), whole numbers inside 64 bits,
finite decimals. `Input` applies it to every field of every request body (a 400 naming the
field); usage events apply it per event (`PerEventInput`), so one bad event is rejected alone
and never sinks its batch. Query parameters use `Day`, `Instant` and the month patterns below,
decoded through the same rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Final

import msgspec
from litestar import Request
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.plugins import OpenAPISchemaPlugin
from litestar.typing import FieldDefinition

from plans.money import plain_decimal
from service.errors import MalformedBody, UnsupportedMediaType

MIN_INSTANT: Final = datetime(1970, 1, 1, tzinfo=UTC)
MAX_INSTANT: Final = datetime(9000, 1, 1, tzinfo=UTC)
"""Instants accepted from clients: [1970-01-01, 9000-01-01) UTC. Wider than any bill, narrow
enough that adding a period, a month or a time zone offset never leaves the calendar."""
MIN_DAY: Final = MIN_INSTANT.date()
MAX_DAY: Final = date(8999, 12, 31)
_MIN_NAIVE: Final = MIN_INSTANT.replace(tzinfo=None)
_MAX_NAIVE: Final = MAX_INSTANT.replace(tzinfo=None)
_INT64: Final = 2**63
_MAX_DECIMAL_EXPONENT: Final = 40

RANGE_TEXT: Final = "between 1970-01-01 and 8999-12-31"


# -- the rule for hostile values ----------------------------------------------------------------


def text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (U+0000), which text here cannot hold: remove it"
    return None


def instant_problem(value: datetime) -> str | None:
    if value.tzinfo is None:
        is_inside = _MIN_NAIVE <= value < _MAX_NAIVE
    else:
        # Compared as instants: Python subtracts the offsets without building a datetime, so
        # 9999-12-31T23:59:59-23:59 compares without overflowing.
        is_inside = MIN_INSTANT <= value < MAX_INSTANT
    if not is_inside:
        return f"must be an instant {RANGE_TEXT} (UTC), not {value.isoformat()}"
    return None


def day_problem(value: date) -> str | None:
    if not MIN_DAY <= value <= MAX_DAY:
        return f"must be a day {RANGE_TEXT}, not {value.isoformat()}"
    return None


def value_problem(value: Any) -> str | None:
    """Why a decoded value may not be used (None when it may). Containers are walked (they hold
    decoded JSON of any shape: properties, contract overrides)."""
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return None if -_INT64 <= value < _INT64 else "is beyond 64 bits: send a smaller number"
    if isinstance(value, datetime):
        return instant_problem(value)
    if isinstance(value, date):
        return day_problem(value)
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        if not isinstance(exponent, int) or abs(exponent) > _MAX_DECIMAL_EXPONENT:
            return "must be a finite decimal of reasonable size (such as 12.5)"
        return None
    if isinstance(value, float):
        return None if value == value and abs(value) != float("inf") else "must be finite"
    if isinstance(value, Mapping | list | tuple):
        return _container_problem(value)
    return None


_limits = {"json_max_depth": 32}
"""Set once at start from the settings (``configure``)."""


def configure(*, json_max_depth: int) -> None:
    _limits["json_max_depth"] = json_max_depth


def max_depth() -> int:
    return _limits["json_max_depth"]


def _container_problem(root: Mapping[Any, Any] | list[Any] | tuple[Any, ...]) -> str | None:
    """Walk decoded JSON without recursion; the path of the first bad value is in the answer.
    Free-form JSON (properties, contract overrides) may nest ``json_max_depth`` levels: typed
    fields cannot nest at all, so this is where the JSON depth limit applies."""
    max_depth = _limits["json_max_depth"]
    stack: list[tuple[str, Any, int]] = [("", root, 1)]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, Mapping | list | tuple) and depth > max_depth:
            return (
                f"{path.lstrip('.') or 'value'} is nested deeper than {max_depth} levels of "
                "objects and arrays: flatten it"
            )
        if isinstance(value, Mapping):
            for key, item in value.items():
                key_text = str(key)
                if (problem := text_problem(key_text)) is not None:
                    return f"key {key_text[:40]!r} at {path or 'top'} {problem}"
                stack.append((f"{path}.{key_text}", item, depth + 1))
        elif isinstance(value, list | tuple):
            stack.extend((f"{path}[{index}]", item, depth + 1) for index, item in enumerate(value))
        elif (problem := value_problem(value)) is not None:
            return f"{path.lstrip('.') or 'value'} {problem}"
    return None


class HostileValue(ValueError):
    """A decoded field breaks the rule; msgspec turns it into a validation error at its path."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field `{field}` {problem}")


class Input(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A request body: unknown fields are refused with a 4xx naming them, and every field's
    value passes `value_problem` (NUL, instants, 64-bit numbers) or is refused with a 400."""

    def __post_init__(self) -> None:
        for name, wire_name in zip(
            self.__struct_fields__, self.__struct_encode_fields__, strict=True
        ):
            value = getattr(self, name)
            if isinstance(value, Input) or (
                isinstance(value, list) and value and isinstance(value[0], Input)
            ):
                continue  # checked by their own __post_init__, with their own paths
            if (problem := value_problem(value)) is not None:
                raise HostileValue(wire_name, problem)


class PerEventInput(Input):
    """A usage event's parts: their values are checked per event by ``service.usage.ingest``
    (with the same rule), so one bad event is rejected on its own and never sinks a batch."""

    def __post_init__(self) -> None:
        return


class Output(msgspec.Struct, kw_only=True):
    """A response body, written one way whatever the values arrived as:

    - every timestamp in UTC, RFC 3339 with ``Z`` (``2026-12-01T00:00:00Z``): periods computed
      in the merchant's zone included, and timestamps inside free-form objects (event
      details, audit changes) too. People's text (documents, line explanations, the CLI)
      uses the merchant's zone and names it; JSON never does;
    - ``Decimal`` fields plain (``20000``, never the ``2E+4`` that PostgreSQL's numerics can
      arrive as): JSON carries a Decimal as its ``str``."""

    def __post_init__(self) -> None:
        decimals, instants, free = _special_fields(type(self))
        for name in decimals:
            value = getattr(self, name)
            if isinstance(value, Decimal):
                setattr(self, name, plain_decimal(value))
        for name in instants:
            value = getattr(self, name)
            if isinstance(value, datetime) and value.utcoffset():
                setattr(self, name, value.astimezone(UTC))
        for name in free:
            setattr(self, name, utc_timestamps(getattr(self, name)))


_SPECIAL_FIELDS: Final[dict[type, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]] = {}
_RFC3339: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$"
)


def _special_fields(cls: type[Output]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The fields of an output type that may hold a Decimal, a datetime, or anything (a
    free-form object): looked up once per type."""
    found = _SPECIAL_FIELDS.get(cls)
    if found is None:
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        found = (
            tuple(f.name for f in info.fields if _may_be(f.type, msgspec.inspect.DecimalType)),
            tuple(f.name for f in info.fields if _may_be(f.type, msgspec.inspect.DateTimeType)),
            tuple(f.name for f in info.fields if _is_free_form(f.type)),
        )
        _SPECIAL_FIELDS[cls] = found
    return found


def _may_be(info: msgspec.inspect.Type, kind: type[msgspec.inspect.Type]) -> bool:
    if isinstance(info, msgspec.inspect.Metadata):  # Annotated with a description, examples
        return _may_be(info.type, kind)
    if isinstance(info, kind):
        return True
    if isinstance(info, msgspec.inspect.UnionType):
        return any(_may_be(member, kind) for member in info.types)
    return False


def _is_free_form(info: msgspec.inspect.Type) -> bool:
    if isinstance(info, msgspec.inspect.Metadata):
        return _is_free_form(info.type)
    if isinstance(info, msgspec.inspect.UnionType):
        return any(_is_free_form(member) for member in info.types)
    if isinstance(info, msgspec.inspect.DictType | msgspec.inspect.ListType):
        return _is_free_form(
            info.value_type if isinstance(info, msgspec.inspect.DictType) else info.item_type
        )
    return isinstance(info, msgspec.inspect.AnyType)


def rfc3339_utc(instant: datetime) -> str:
    """An instant as JSON carries it here: UTC, RFC 3339, ``Z``."""
    return msgspec.json.encode(instant.astimezone(UTC)).decode()[1:-1]


def utc_timestamps(value: Any) -> Any:
    """A free-form value with every RFC 3339 timestamp in it (strings, datetimes) rewritten
    as UTC ``Z``; everything else unchanged."""
    if isinstance(value, str):
        if _RFC3339.match(value) and not value.endswith("Z"):
            try:
                return rfc3339_utc(datetime.fromisoformat(value))
            except ValueError:
                return value
        return value
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo is not None else value
    if isinstance(value, dict):
        return {key: utc_timestamps(item) for key, item in value.items()}
    if isinstance(value, list):
        return [utc_timestamps(item) for item in value]
    return value


# -- patterns with words: a refused value is explained in words, never with the regex ----------

PATTERN_HINTS: dict[str, str] = {}
"""Each pattern used on the wire and what it means, for error messages (``service.problems``)."""


def pattern(regex: str, hint: str, **meta: Any) -> msgspec.Meta:
    """A ``msgspec.Meta`` with ``regex``; a refused value is answered with ``hint``."""
    PATTERN_HINTS[regex] = hint
    return msgspec.Meta(pattern=regex, **meta)


MONTH_REGEX: Final = r"^(19[7-9]\d|[2-8]\d{3})-(0[1-9]|1[0-2])$"
MONTH_HINT: Final = "a calendar month YYYY-MM (01 to 12) between 1970-01 and 8999-12"
PATTERN_HINTS[MONTH_REGEX] = MONTH_HINT

Email = Annotated[
    str,
    pattern(
        r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        "an email address such as ops@shop.cn",
        max_length=320,
        examples=["ops@shop.cn"],
    ),
]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
CurrencyCode = Annotated[
    str, pattern(r"^[A-Z]{3}$", "an ISO 4217 code in capitals, such as CNY", examples=["CNY"])
]
TimezoneName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, examples=["Asia/Shanghai"])]
Month = Annotated[str, pattern(MONTH_REGEX, MONTH_HINT, examples=["2026-11"])]


# -- query parameters: a day and an instant, decoded through the rule above --------------------


class Day(date):
    """A calendar day from a query (``2026-11-30``), inside `MIN_DAY` … `MAX_DAY`."""


class Instant(datetime):
    """An instant from a query (``2026-11-30T00:00:00+08:00``), inside the accepted range."""


def decode_query_value(target: type, value: Any) -> Any:
    """Litestar's type decoder for `Day` and `Instant` (``type_decoders`` in the app)."""
    if target is Day:
        parsed_day = value if isinstance(value, date) else msgspec.convert(value, date)
        if (problem := day_problem(parsed_day)) is not None:
            raise ValueError(problem)
        return Day(parsed_day.year, parsed_day.month, parsed_day.day)
    parsed = value if isinstance(value, datetime) else msgspec.convert(value, datetime)
    if (problem := instant_problem(parsed)) is not None:
        raise ValueError(problem)
    return Instant.fromisoformat(parsed.isoformat())


def is_query_type(target: Any) -> bool:
    return target is Day or target is Instant


TYPE_DECODERS: Final = [(is_query_type, decode_query_value)]


# -- the body decoder ---------------------------------------------------------------------------

_JSON_MEDIA = re.compile(r"^application/([a-z0-9.+-]*\+)?json$")
_BYTE_AT = re.compile(r"\(byte (\d+)\)")


def check_media_type(content_type: str | None) -> None:
    """JSON bodies come as ``application/json`` (or ``+json``); none given is taken as JSON."""
    if not content_type:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if not _JSON_MEDIA.match(media):
        raise UnsupportedMediaType(
            f"this endpoint reads JSON: send the body as 'Content-Type: application/json', "
            f"not {media[:80]!r}",
            field="Content-Type",
        )


def decode_body(body: bytes, *, content_type: str | None, max_depth: int) -> Any:
    """A request body as plain JSON values, or `MalformedBody` / `UnsupportedMediaType`."""
    check_media_type(content_type)
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError as error:
        raise MalformedBody(_where(str(error), body)) from None
    except RecursionError:
        raise MalformedBody(
            f"the body is nested deeper than {max_depth} levels of objects and arrays: flatten it"
        ) from None
    except UnicodeDecodeError as error:
        raise MalformedBody(
            f"the body is not UTF-8: invalid byte at {_position(body, error.start)}; "
            "send JSON encoded as UTF-8"
        ) from None
    # Deeper nesting inside free-form values is refused by the value rule, field by field
    # (walking every container of a 10,000-event batch here would double its decoding cost).
    return value


def too_deep_at(root: Any, max_depth: int) -> str | None:
    """The path where ``root`` nests deeper than ``max_depth`` containers, if it does."""
    if _nests_within(root, max_depth):  # the usual answer, found without building paths
        return None
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > max_depth:
            return _path_to(root, value)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return None


def _nests_within(value: Any, levels: int) -> bool:
    """Whether ``value`` holds at most ``levels`` levels of containers (itself included). One
    call per container, never deeper than ``levels``: a decoded document's leaves cost a type
    check each."""
    kind = type(value)
    if kind is dict:
        children = value.values()
    elif kind is list:
        children = value
    else:
        return True
    if levels < 1:
        return False
    for child in children:
        child_kind = type(child)
        if (child_kind is dict or child_kind is list) and not _nests_within(child, levels - 1):
            return False
    return True


def _path_to(root: Any, target: Any) -> str:
    stack: list[tuple[Any, str]] = [(root, "$")]
    while stack:
        value, path = stack.pop()
        if value is target:
            return path
        if isinstance(value, dict):
            stack.extend((child, f"{path}.{key}") for key, child in value.items())
        elif isinstance(value, list):
            stack.extend((child, f"{path}[{index}]") for index, child in enumerate(value))
    return "$"


def _where(message: str, body: bytes) -> str:
    if message == "Input data was truncated":
        return (
            f"the body is not valid JSON: it ends at {_position(body, len(body))} while a "
            "string, array or object is not closed (was it cut short?)"
        )
    found = _BYTE_AT.search(message)
    reason = _BYTE_AT.sub("", message).removeprefix("JSON is malformed:").strip()
    if found is None:
        return f"the body is not valid JSON: {reason}"
    return f"the body is not valid JSON: {reason} at {_position(body, int(found.group(1)))}"


def _position(body: bytes, offset: int) -> str:
    before = body[:offset]
    line = before.count(b"\n") + 1
    column = offset - (before.rfind(b"\n") + 1) + 1
    return f"line {line}, column {column} (byte {offset})"


class JsonRequest(Request[Any, Any, Any]):
    """Litestar's request, reading JSON bodies through `decode_body` (the app's
    ``request_class``), so every route gets the same limits and the same messages."""

    async def json(self) -> Any:
        cached = self.scope.get("state", {}).get(_DECODED)
        if cached is not None:
            return cached[0]
        limits = self.app.state.settings.limits
        value = decode_body(
            await self.body(),
            content_type=self.headers.get("content-type"),
            max_depth=limits.json_max_depth,
        )
        self.scope.setdefault("state", {})[_DECODED] = (value,)
        return value


_DECODED: Final = "decoded_json_body"


class QueryTypesSchema(OpenAPISchemaPlugin):
    """`Day` and `Instant` in the OpenAPI document: strings of format date and date-time."""

    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        return is_query_type(value)

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        is_day = field_definition.annotation is Day
        return Schema(
            type=OpenAPIType.STRING,
            format=OpenAPIFormat.DATE if is_day else OpenAPIFormat.DATE_TIME,
            description=f"{'A day' if is_day else 'An instant'} {RANGE_TEXT}",
        )


class InputSchema(StructSchemaPlugin):
    """`Input` bodies in the OpenAPI document say ``additionalProperties: false``, as the
    service enforces (an unknown field is a 400): clients and fuzzers see the real contract."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return super().is_plugin_supported_field(field_definition) and issubclass(
            field_definition.type_, Input
        )

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        return schema
