"""KV-cache eviction policies (kvpress-like): one scorer per module, a registry by name.

>>> from cachesvc.policies.kv import make_policy, compress
>>> policy = make_policy("defensivekv", compression_ratio=0.8)   # keep 20% of the context, window included

The names below are loaded on first use, so that ``cachesvc.policies.kv.names`` (the policy names, for
configuration checks and command-line help) imports neither torch nor transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .adakv import AdaKVPolicy
    from .apply import CompressionReport, GenerationResult, compress, generate_with_policy
    from .base import KVPolicy, ScoreInputs
    from .criticalkv import CriticalKVPolicy
    from .defensivekv import DefensiveKVPolicy
    from .layer_defensivekv import LayerDefensiveKVPolicy
    from .random_press import RandomPolicy
    from .registry import KV_POLICIES, make_policy
    from .snapkv import SnapKVPolicy
    from .streaming_llm import StreamingLLMPolicy

_EXPORTS = {
    "KV_POLICIES": "registry", "make_policy": "registry",
    "KVPolicy": "base", "ScoreInputs": "base",
    "compress": "apply", "generate_with_policy": "apply", "CompressionReport": "apply", "GenerationResult": "apply",
    "RandomPolicy": "random_press", "StreamingLLMPolicy": "streaming_llm", "SnapKVPolicy": "snapkv",
    "AdaKVPolicy": "adakv", "CriticalKVPolicy": "criticalkv", "DefensiveKVPolicy": "defensivekv",
    "LayerDefensiveKVPolicy": "layer_defensivekv",
}
__all__ = [
    "KV_POLICIES", "AdaKVPolicy", "CompressionReport", "CriticalKVPolicy", "DefensiveKVPolicy", "GenerationResult",
    "KVPolicy", "LayerDefensiveKVPolicy", "RandomPolicy", "ScoreInputs", "SnapKVPolicy", "StreamingLLMPolicy",
    "compress", "generate_with_policy", "make_policy",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
