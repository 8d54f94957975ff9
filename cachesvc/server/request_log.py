"""The proxy's log lines: one JSON object a line (or plain text), each carrying the id of the request it was written
for. The id lives in a context variable that the request-id middleware (``middlewares.request_ids``) sets for the
length of a request; the tasks a request starts inherit it. ``install_logging`` puts one handler on the root logger,
with the redaction filter (``log_redaction``) in front of its formatter."""

from __future__ import annotations

import contextvars
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import orjson

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("cachesvc_request_id", default=None)

# What every LogRecord carries; any other attribute came from ``extra=`` and becomes a field of the JSON line.
STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def request_id_of(record: logging.LogRecord) -> str | None:
    """The id of the request a record was written for: given with ``extra={"request_id": ...}``, else the current
    request's."""
    given = getattr(record, "request_id", None)
    return given if isinstance(given, str) else REQUEST_ID.get()


class JsonFormatter(logging.Formatter):
    """``{"ts": ISO-8601 UTC, "level", "logger", "message", "request_id" (in a request), the ``extra`` fields,
    "exc_info" / "stack_info" (when there are)}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_of(record)
        if request_id is not None:
            line["request_id"] = request_id
        for name, value in vars(record).items():
            if name not in STANDARD_ATTRIBUTES and name not in line:
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """The classic line, with `` request_id=...`` at its end inside a request."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = request_id_of(record)
        if request_id is None:
            return text
        head, newline, rest = text.partition("\n")  # after the message, before any traceback
        return f"{head} request_id={request_id}{newline}{rest}"


def install_logging(level: str, log_format: Literal["json", "text"], redaction: logging.Filter | None = None,
                    stream: TextIO | None = None) -> logging.Handler:
    """Replace the root logger's handlers with one writing to ``stream`` (stderr) in ``log_format``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    if redaction is not None:
        handler.addFilter(redaction)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    return handler
