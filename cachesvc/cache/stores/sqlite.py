"""Embedded persistent store: one SQLite file; a restart keeps the cache and rebuilds the index from it."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from cachesvc.cache.entry import SCOPE_FIELDS, CacheEntry, EntryScope
from cachesvc.cache.stores import register_store
from cachesvc.config import StoreConfig
from cachesvc.openai.answer import Answer

T = TypeVar("T")

_COLUMNS = ("entry_id", *SCOPE_FIELDS, "query", "answer", "vector", "created_at", "ttl_s", "expires_at")
_TYPES = {"entry_id": "INTEGER PRIMARY KEY", "query": "TEXT", "answer": "TEXT NOT NULL", "vector": "BLOB",
          "created_at": "REAL NOT NULL", "ttl_s": "REAL NOT NULL", "expires_at": "REAL NOT NULL"}
_COLUMN_DEFS = ", ".join(f"{column} {_TYPES.get(column, 'TEXT NOT NULL')}" for column in _COLUMNS)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS entries ({_COLUMN_DEFS});
CREATE INDEX IF NOT EXISTS entries_exact_key ON entries (exact_key);
"""
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM entries"


@register_store("sqlite")
class SqliteStore:
    """All SQLite calls run on one dedicated thread: the connection stays on its thread, the event loop never blocks."""

    name = "sqlite"

    def __init__(self, config: StoreConfig) -> None:
        self._path = Path(config.path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        def connect() -> None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            self._db = db
        await self._run(connect)

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("SqliteStore used before open()")
        return self._db

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a query and fetch all its rows (on the store's thread, through `_run`)."""
        return self.db.execute(sql, params).fetchall()

    async def put(self, entry: CacheEntry) -> None:
        scope = dataclasses.astuple(entry.scope)
        row = (entry.entry_id, *scope, entry.query, entry.answer.to_json().decode(), entry.vector_bytes(),
               entry.created_at, entry.ttl_s, entry.expires_at)
        sql = f"INSERT OR REPLACE INTO entries ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
        await self._run(self.db.execute, sql, row)

    async def get(self, entry_id: int) -> CacheEntry | None:
        rows = await self._run(self._rows, f"{_SELECT} WHERE entry_id = ?", (entry_id,))
        return _entry(rows[0]) if rows else None

    async def get_by_exact_key(self, exact_key: str) -> CacheEntry | None:
        sql = f"{_SELECT} WHERE exact_key = ? ORDER BY created_at DESC LIMIT 1"
        rows = await self._run(self._rows, sql, (exact_key,))
        return _entry(rows[0]) if rows else None

    async def delete(self, entry_ids: Iterable[int]) -> int:
        ids = [(int(i),) for i in entry_ids]

        def delete() -> int:
            before = self.db.total_changes
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM entries WHERE entry_id = ?", ids)
            self.db.execute("COMMIT")
            return self.db.total_changes - before
        return await self._run(delete) if ids else 0

    async def scan(self) -> AsyncIterator[CacheEntry]:
        await self._run(self.db.execute, "DELETE FROM entries WHERE expires_at <= ?", (time.time(),))
        last = -(2**63)
        while True:
            sql = f"{_SELECT} WHERE entry_id > ? ORDER BY entry_id LIMIT 1000"
            rows = await self._run(self._rows, sql, (last,))
            if not rows:
                return
            for row in rows:
                yield _entry(row)
            last = rows[-1][0]

    async def count(self) -> int:
        rows = await self._run(self._rows, "SELECT COUNT(*) FROM entries")
        return int(rows[0][0])


def _entry(row: tuple[Any, ...]) -> CacheEntry:
    values = dict(zip(_COLUMNS, row))
    scope = EntryScope(**{name: values.pop(name) for name in SCOPE_FIELDS})
    values["answer"] = Answer.from_json(values["answer"])
    values["vector"] = CacheEntry.vector_from_bytes(values["vector"])
    return CacheEntry(scope=scope, **values)
