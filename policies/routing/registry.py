"""Adapter routers by the name a pool's ``router:`` gives (the offline hindsight oracle is not one: it needs the
future; see hindsight_oracle.py)."""

from __future__ import annotations

from .paging_baselines import LinUCBLFURouter, LinUCBLRURouter, RandomRouter
from .polar import PolarRouter
from .polar_plus import PolarPlusRouter
from .resident_only import GreedyResidentRouter, StaticTopKRouter
from .router import LinUCBRouter, RouterSettings

ROUTERS: dict[str, type[LinUCBRouter]] = {cls.name: cls for cls in (
    PolarRouter, PolarPlusRouter, LinUCBLRURouter, LinUCBLFURouter, StaticTopKRouter, GreedyResidentRouter,
    RandomRouter,
)}


def make_router(name: str, settings: RouterSettings) -> LinUCBRouter:
    """A registered router; an unknown name raises ``ValueError`` listing the known ones."""
    try:
        return ROUTERS[name](settings)
    except KeyError:
        raise ValueError(f"unknown router {name!r}; known: {', '.join(sorted(ROUTERS))}") from None
