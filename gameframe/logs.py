"""The server's log as JSON Lines (C{--log-format json}): one object per line, for log shippers."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import IO, Any

import orjson
from twisted.application.service import IService, MultiService
from twisted.logger import FileLogObserver, ILogObserver, formatEvent

LOG_FORMATS = ("text", "json")


def json_line(event: dict[str, Any]) -> str:
    """
    One log event as one line of JSON: C{time} (ISO 8601, UTC), C{level},
    C{namespace}, C{message} (the formatted text), and C{failure} (the
    traceback) when the event carries one.
    """
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time", 0.0), timezone.utc).isoformat(),
        "level": getattr(event.get("log_level"), "name", "info"),
        "namespace": event.get("log_namespace", "-"),
        "message": formatEvent(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        record["failure"] = failure.getTraceback()
    return orjson.dumps(record, default=repr).decode() + "\n"


def json_observer(out: IO[str] | None = None) -> ILogObserver:
    """A log observer writing JSON Lines to C{out} (standard output by default)."""
    return FileLogObserver(out if out is not None else sys.stdout, json_line)


class LoggedAs(MultiService):
    """
    Wraps the server so twistd logs through C{observer}: twistd starts its log
    after the plugin made the service, with the application's C{ILogObserver}
    if it has one, and this sets it when twistd adds the service to the
    application. Every line is then the observer's, twistd's own included.
    """

    def __init__(self, server: IService, observer: ILogObserver) -> None:
        super().__init__()
        self.observer = observer
        server.setServiceParent(self)

    def setServiceParent(self, parent: Any) -> None:
        if hasattr(parent, "setComponent"):
            parent.setComponent(ILogObserver, self.observer)
        super().setServiceParent(parent)
