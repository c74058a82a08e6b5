"""Usage-event documents: where their parts live (:class:`FieldNames`) and their rules (:class:`EventSchema`).

Every document read from a source goes through the rules of :class:`EventSchema` (marshmallow):
the user, screen and instance are strings (``"01"`` stays the string ``"01"``; a number is
refused, never coerced), and the timestamp is an ISO-8601 string (no offset = UTC) or epoch
milliseconds (``timestamps.py``). A document that breaks a rule is counted as invalid and skipped.

Running marshmallow on millions of documents would cost more than the whole rest of a job, so
:class:`~worker.sources.accumulator.EventAccumulator` applies the same rules in a tight loop and
only hands the documents it refuses to the schema, to confirm them and keep a readable reason
(``tests/test_documents.py`` checks that both always agree).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate

from sessionizer.settings import SourceSettings

from .timestamps import timestamp_ms


@dataclass(frozen=True)
class FieldNames:
    """Where each part of an event lives in a source document."""

    timestamp: str = "@timestamp"
    user: str = "util"
    screen: str = "ecran"
    instance: str = "instance"

    @property
    def source_fields(self) -> list[str]:
        return [self.timestamp, self.user, self.screen, self.instance]

    @classmethod
    def from_settings(cls, source: SourceSettings) -> FieldNames:
        """The names configured by ``FIELD_TIMESTAMP``, ``FIELD_USER``, ``FIELD_SCREEN``, ``FIELD_INSTANCE``."""
        return cls(source.timestamp_field, source.user_field, source.screen_field, source.instance_field)


# the names of the seed data set: the default everywhere a source is built without settings
DEFAULT_NAMES = FieldNames()


class TimestampField(fields.Field):
    """An ISO-8601 string (no offset = UTC) or epoch milliseconds, deserialised to epoch ms."""

    default_error_messages = {
        "invalid": "Not an ISO-8601 timestamp or epoch milliseconds.",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> int:
        parsed = timestamp_ms(value)
        if parsed is None:
            raise self.make_error("invalid")
        return parsed


def event_schema(names: FieldNames = DEFAULT_NAMES) -> Schema:
    """The marshmallow schema of one event document under the given field names."""
    return _event_schema(names)


@lru_cache(maxsize=16)
def _event_schema(names: FieldNames) -> Schema:
    def text(key: str) -> fields.String:
        return fields.String(data_key=key, required=True, validate=validate.Length(min=1))

    schema_cls = Schema.from_dict(
        {
            "timestamp": TimestampField(required=True, data_key=names.timestamp),
            "user": text(names.user),
            "screen": text(names.screen),
            "instance": text(names.instance),
        },
        name="EventSchema",
    )
    return schema_cls(unknown=EXCLUDE)


EventSchema = _event_schema(DEFAULT_NAMES).__class__


def validate_document(doc: Mapping[str, Any], names: FieldNames = DEFAULT_NAMES) -> dict[str, Any]:
    """Deserialize one document with the schema; raises ``marshmallow.ValidationError``."""
    return event_schema(names).load(doc)
