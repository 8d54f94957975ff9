"""Give a GQA model more KV heads without changing what it computes (an experiment on cache layouts).

Each KV head's rows of ``k_proj``/``v_proj`` are repeated, so query head ``h`` reads its own copy of the keys and
values it read before: the outputs are the same, the cache holds ``new / old`` copies of every entry, and a
head-wise eviction policy may keep or drop each copy on its own, as it would on a model with that many KV heads
(SmolLM2-135M: 3 KV heads for 9 query heads; expanded to 9 it is laid out like a multi-head-attention model).
Used by ``benchmarks/bench_kv_quality.py --kv-heads``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from cachesvc.policies.kv.apply import attention_modules

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@torch.no_grad()
def expand_kv_heads(model: PreTrainedModel, kv_heads: int) -> None:
    """In place: every attention layer gets ``kv_heads`` KV heads, a multiple of the current count that divides
    the number of query heads."""
    config = model.config
    old, q_heads = config.num_key_value_heads, config.num_attention_heads
    if kv_heads < old or kv_heads % old or q_heads % kv_heads:
        raise ValueError(f"kv_heads must be a multiple of num_key_value_heads={old} that divides "
                         f"num_attention_heads={q_heads}, got {kv_heads}")
    repeat = kv_heads // old
    for module in attention_modules(model):
        for name in ("k_proj", "v_proj"):
            proj: torch.nn.Linear = getattr(module, name)
            weight = proj.weight.reshape(old, module.head_dim, -1).repeat_interleave(repeat, dim=0)
            wide = torch.nn.Linear(proj.in_features, kv_heads * module.head_dim, bias=proj.bias is not None,
                                   device=proj.weight.device, dtype=proj.weight.dtype)
            wide.weight.copy_(weight.reshape(kv_heads * module.head_dim, -1))
            if proj.bias is not None:
                wide.bias.copy_(proj.bias.reshape(old, module.head_dim).repeat_interleave(repeat, dim=0).flatten())
            setattr(module, name, wide)
        module.num_key_value_groups = q_heads // kv_heads
    config.num_key_value_heads = kv_heads
