"""Document stores, registered by name: `cache.store.kind` in the config picks one."""

from __future__ import annotations

from typing import Callable

from cachesvc.config import StoreConfig
from cachesvc.cache.stores.base import DocumentStore

_STORES: dict[str, Callable[[StoreConfig], DocumentStore]] = {}


def register_store(name: str) -> Callable[[Callable[[StoreConfig], DocumentStore]], Callable[[StoreConfig], DocumentStore]]:
    def wrap(factory: Callable[[StoreConfig], DocumentStore]) -> Callable[[StoreConfig], DocumentStore]:
        _STORES[name] = factory
        return factory
    return wrap


def create_store(config: StoreConfig) -> DocumentStore:
    """Build the store named by `config.kind`; an unknown name is an error that lists the known ones."""
    from cachesvc.cache.stores import memory, sqlite  # noqa: F401  (registration)

    try:
        factory = _STORES[config.kind]
    except KeyError:
        raise ValueError(f"cache.store.kind: unknown store {config.kind!r} (known: {', '.join(sorted(_STORES))})") from None
    return factory(config)


__all__ = ["DocumentStore", "create_store", "register_store"]
