"""Which entries an invalidation removes."""

from __future__ import annotations

from dataclasses import dataclass

from cachesvc.cache.entry import EntryScope


@dataclass(frozen=True)
class Selector:
    """Fields left None match anything; ``everything`` matches every entry."""

    category: str | None = None
    namespace: str | None = None
    tenant: str | None = None
    model: str | None = None
    entry_id: int | None = None
    everything: bool = False

    @property
    def empty(self) -> bool:
        """Selects nothing in particular: an invalidation must say what it removes."""
        return not self.everything and self == Selector()

    def matches(self, entry_id: int, scope: EntryScope) -> bool:
        return self.everything or (
            (self.entry_id is None or self.entry_id == entry_id)
            and (self.category is None or self.category == scope.category)
            and (self.namespace is None or self.namespace == scope.namespace)
            and (self.tenant is None or self.tenant == scope.tenant)
            and (self.model is None or self.model == scope.model)
        )
