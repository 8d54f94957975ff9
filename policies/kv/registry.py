"""The KV policies by name: one entry per policy module."""

from __future__ import annotations

import dataclasses
from typing import Any

from .adakv import AdaKVPolicy
from .base import KVPolicy
from .criticalkv import CriticalKVPolicy
from .defensivekv import DefensiveKVPolicy
from .layer_defensivekv import LayerDefensiveKVPolicy
from .random_press import RandomPolicy
from .snapkv import SnapKVPolicy
from .streaming_llm import StreamingLLMPolicy

KV_POLICIES: dict[str, type[KVPolicy]] = {
    "random": RandomPolicy,
    "streaming_llm": StreamingLLMPolicy,
    "snapkv": SnapKVPolicy,
    "adakv": AdaKVPolicy,
    "criticalkv": CriticalKVPolicy,
    "defensivekv": DefensiveKVPolicy,
    "layer_defensivekv": LayerDefensiveKVPolicy,
}


def make_policy(name: str, **fields: Any) -> KVPolicy:
    """Instantiate a registered policy; unknown names and fields raise ``ValueError`` listing the known ones."""
    try:
        cls = KV_POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown KV policy {name!r}; known: {', '.join(sorted(KV_POLICIES))}") from None
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"{name} has no field {unknown[0]!r}; known: {', '.join(sorted(known))}")
    return cls(**fields)
