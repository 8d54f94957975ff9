"""Document stores, registered by name: `cache.store.kind` in the config picks one."""

from __future__ import annotations

from collections.abc import Callable

from cachesvc.cache.stores.base import DocumentStore
from cachesvc.config import StoreConfig

StoreFactory = Callable[[StoreConfig], DocumentStore]
_STORES: dict[str, StoreFactory] = {}


def register_store(name: str) -> Callable[[StoreFactory], StoreFactory]:
    def wrap(factory: StoreFactory) -> StoreFactory:
        _STORES[name] = factory
        return factory
    return wrap


def create_store(config: StoreConfig) -> DocumentStore:
    """Build the store named by `config.kind`; an unknown name is an error that lists the known ones."""
    from cachesvc.cache.stores import memory, sqlite  # noqa: F401  (registration)

    if config.kind == "redis":  # only then: importing redis-py costs ~85 ms of start-up the other stores need not pay
        from cachesvc.cache.stores import redis  # noqa: F401  (registration)
    try:
        factory = _STORES[config.kind]
    except KeyError:
        known = ", ".join(sorted({*_STORES, "redis"}))
        raise ValueError(f"cache.store.kind: unknown store {config.kind!r} (known: {known})") from None
    return factory(config)


__all__ = ["DocumentStore", "create_store", "register_store"]
