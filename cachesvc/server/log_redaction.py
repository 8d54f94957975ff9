"""Secrets never reach a log line: a logging filter, on the root handler, that scrubs every record (its message with
its arguments, its ``extra`` fields, its traceback) of credentials after ``Bearer``/``Basic``, ``sk-`` style keys,
passwords in URLs, and the exact secrets the configuration holds (upstream and adapter-pool API keys, the admin
key, the Redis password, the judge's key)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

from cachesvc.config import Config
from cachesvc.server.request_log import STANDARD_ATTRIBUTES

REDACTED = "[redacted]"
MIN_SECRET_CHARS = 4  # shorter configured values are not scrubbed verbatim (they would blank ordinary words)
_PATTERNS = (
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s\"',;]+"), rf"\1\2{REDACTED}"),  # Authorization credentials
    (re.compile(r"\bsk-[A-Za-z0-9_-]{6,}"), REDACTED),  # OpenAI-style keys: sk-..., sk-proj-...
    (re.compile(r"(://[^/\s:@]*:)[^/\s@]+@"), rf"\1{REDACTED}@"),  # scheme://user:password@host
)
_TRACEBACKS = logging.Formatter()


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        exact = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)
        self._exact = re.compile("|".join(map(re.escape, exact))) if exact else None

    def scrub(self, text: str) -> str:
        if self._exact is not None:
            text = self._exact.sub(REDACTED, text)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


class RedactingFilter(logging.Filter):
    """Rewrites each record in place (so every handler after it sees the scrubbed record) and lets it through."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        scrub = self.redactor.scrub
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format: keep both, as text
            message = f"{record.msg} {record.args}"
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in STANDARD_ATTRIBUTES and isinstance(value, str):
                setattr(record, name, scrub(value))
        return True


def configured_secrets(config: Config) -> set[str]:
    """The secret values ``config`` holds or names (environment variables it points to included)."""
    secrets = {u.api_key for u in config.upstreams if u.api_key}
    secrets |= {p.api_key for p in config.adapter_pools if p.api_key}
    if config.server.admin_key:
        secrets.add(config.server.admin_key)
    store = config.cache.store
    parts = urlsplit(store.url)
    passwords = [parts.password or ""] + [v for k, v in parse_qsl(parts.query) if k.lower() == "password"]
    secrets |= {p for raw in passwords for p in (raw, unquote(raw)) if p}
    names = [store.password_env, config.cache.judge.api_key_env if config.cache.judge is not None else None,
             *(name for tenant in config.tenants.entries for name in tenant.api_key_env)]
    secrets |= {os.environ[name] for name in names if name and os.environ.get(name)}
    return secrets


def redaction_for(config: Config) -> RedactingFilter:
    return RedactingFilter(Redactor(configured_secrets(config)))
