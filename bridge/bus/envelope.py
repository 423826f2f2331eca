"""The event envelope: our own frozen type shaped like CloudEvents 1.0.

Inside the bridge every event is an `Event`; the `cloudevents` SDK is used only where an
event crosses a transport edge (HTTP, Kafka, structured JSON), so the core does not depend
on that SDK's object model. `source` + `id` is the duplicate key everywhere.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from bridge import codec
from bridge.errors import BridgeError
from bridge.tracing import TRACEPARENT, TRACESTATE, current_headers

__all__ = ["Event", "EventError", "SPECVERSION", "traced"]

SPECVERSION = "1.0"
_ATTRIBUTES = ("id", "source", "type", "specversion", "subject", "time", "datacontenttype")
# CloudEvents 1.0: extension names are lowercase a-z or 0-9, at most 20 characters.
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")


class EventError(BridgeError):
    """An event that is not a valid envelope (missing attribute, bad extension name...)."""


def _frozen(values: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(values))


@dataclass(frozen=True)
class Event:
    """One event. `data` is JSON data (encode typed values with `bridge.codec` first)."""

    id: str
    source: str
    type: str
    data: Any = None
    subject: str | None = None
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: str = "application/json"
    specversion: str = SPECVERSION
    extensions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("id", "source", "type"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise EventError(
                    f"event attribute {name!r} must be a non-empty string, got {value!r}"
                )
        if self.specversion != SPECVERSION:
            raise EventError(
                f"event {self.id!r}: specversion {self.specversion!r} is not {SPECVERSION!r}"
            )
        if self.time.tzinfo is None:
            raise EventError(f"event {self.id!r}: time must be timezone-aware (use UTC)")
        for name, value in self.extensions.items():
            if not _EXTENSION_NAME.match(name) or name in _ATTRIBUTES or name == "data":
                raise EventError(
                    f"event {self.id!r}: extension name {name!r} must be 1-20 lowercase letters "
                    "or digits and not a CloudEvents attribute"
                )
            if not isinstance(value, str):
                raise EventError(f"event {self.id!r}: extension {name!r} must be a string")
        object.__setattr__(self, "extensions", _frozen(self.extensions))
        codec.to_jsonable(self.data, where=f"event {self.id!r} data")

    @classmethod
    def new(
        cls,
        type: str,
        data: Any = None,
        *,
        source: str = "bridge",
        subject: str | None = None,
        id: str | None = None,
        **extensions: str,
    ) -> Event:
        """A fresh event with a random id and the current time; typed `data` is encoded."""
        return cls(
            id=id or str(uuid.uuid4()),
            source=source,
            type=type,
            data=codec.to_jsonable(data, where=f"event {type!r} data"),
            subject=subject,
            extensions=extensions,
        )

    @property
    def trace_headers(self) -> dict[str, str]:
        """The W3C trace context the event carries (the CloudEvents distributed-tracing
        extensions `traceparent` and `tracestate`); empty for an event without one."""
        return {k: self.extensions[k] for k in (TRACEPARENT, TRACESTATE) if k in self.extensions}

    @property
    def key(self) -> tuple[str, str]:
        """The duplicate key: two events with the same source and id are one event."""
        return (self.source, self.id)

    def to_dict(self) -> dict[str, Any]:
        """CloudEvents structured-mode JSON (attributes and extensions at the top level)."""
        out: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time.isoformat(),
            "datacontenttype": self.datacontenttype,
        }
        if self.subject is not None:
            out["subject"] = self.subject
        out.update(self.extensions)
        out["data"] = self.data
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Event:
        """Parse structured-mode JSON; unknown top-level names become extensions."""
        try:
            when = raw.get("time")
            time = datetime.fromisoformat(when) if when else datetime.now(UTC)
            extensions = {k: v for k, v in raw.items() if k not in _ATTRIBUTES and k != "data"}
            return cls(
                id=raw["id"],
                source=raw["source"],
                type=raw["type"],
                specversion=raw.get("specversion", SPECVERSION),
                subject=raw.get("subject"),
                time=time,
                datacontenttype=raw.get("datacontenttype", "application/json"),
                data=raw.get("data"),
                extensions=extensions,
            )
        except KeyError as exc:
            raise EventError(f"event is missing the required attribute {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise EventError(f"event is not a valid CloudEvents envelope: {exc}") from None


def traced(event: Event) -> Event:
    """`event` carrying the current trace context as its `traceparent`/`tracestate`
    extensions, so whoever handles it continues the publisher's trace; unchanged when it
    already carries one (a completion event carries its run's) or when nothing is traced
    here. Every transport applies it as it publishes. An old event without the extensions
    is read as before: the extensions are optional."""
    if TRACEPARENT in event.extensions:
        return event
    found = current_headers()
    if not found:
        return event
    return dataclasses.replace(event, extensions={**event.extensions, **found})
