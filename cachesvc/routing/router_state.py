"""A pool's router state on disk, as JSON: written atomically (a temporary file renamed over the old one), read
back at start. A state for other adapters or another router is set aside with a warning, never half-loaded."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("cachesvc")
FORMAT = 1


def save_state(path: Path, pool: str, adapters: list[str], router_state: dict[str, Any]) -> None:
    """Write the state (blocking: call it from a worker thread)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"format": FORMAT, "pool": pool, "adapters": adapters, "router": router_state})
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(body)
    os.replace(temporary, path)


def read_state(path: Path, pool: str, adapters: list[str]) -> dict[str, Any] | None:
    """The router's saved state, or None (no file, unreadable, or saved for another pool or adapter list)."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("router state %s is unreadable (%s); starting afresh", path, type(exc).__name__)
        return None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or raw.get("pool") != pool:
        log.warning("router state %s is not pool %r's; starting afresh", path, pool)
        return None
    if raw.get("adapters") != adapters:
        log.warning("router state %s was saved for adapters %s, the pool now has %s; starting afresh", path,
                    raw.get("adapters"), adapters)
        return None
    state = raw.get("router")
    return state if isinstance(state, dict) else None
