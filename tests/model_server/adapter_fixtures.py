"""Two small real LoRA adapters for SmolLM2, trained once per test run on offline corpora (code and legal).

They differ in rank and target modules on purpose, so loading them side by side is exercised as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from aiohttp.test_utils import TestServer

from cachesvc.model_server.adapter_corpora import domain_texts, split
from cachesvc.model_server.adapter_training import train_lora_adapter

# (domain, rank, target modules): few steps on the last decoder layers keep this to seconds on two cores.
ADAPTER_SPECS = (
    ("code", 8, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
    ("legal", 4, ("q_proj", "v_proj")),
)
TRAIN_LAYERS = range(24, 30)
SEQ_LEN = 64
CORPUS_LIMIT = 40


def heldout_texts(domain: str) -> list[str]:
    """The held-out split the fixture's adapters never trained on."""
    return split(domain_texts(domain, limit=CORPUS_LIMIT))[1]


@pytest.fixture(scope="session")
def trained_adapters(smollm2: tuple[torch.nn.Module, object], tmp_path_factory: pytest.TempPathFactory
                     ) -> dict[str, Path]:
    """``{domain: adapter directory}`` for "code" (rank 8, every linear layer) and "legal" (rank 4, q/v)."""
    model, tokenizer = smollm2
    root = tmp_path_factory.mktemp("adapters")
    adapters = {}
    for domain, rank, targets in ADAPTER_SPECS:
        train, heldout = split(domain_texts(domain, limit=CORPUS_LIMIT))
        train_lora_adapter(
            model, tokenizer, train, root / domain, rank=rank, alpha=2 * rank, target_modules=targets, steps=8,
            lr=5e-3, seq_len=SEQ_LEN, batch_size=2, layers=TRAIN_LAYERS, heldout=heldout, eval_windows=1,
        )
        adapters[domain] = root / domain
    return adapters


@asynccontextmanager
async def lora_model_server(smollm2: Any, adapters: dict[str, Path], *, max_loras: int) -> AsyncIterator[TestServer]:
    """The reference model server with ``adapters``' directory as its LoRA root; on exit every adapter a test
    loaded is unloaded again, so that the shared model is left as it was."""
    from cachesvc.model_server.app import ENGINE
    from tests.model_server.test_api import start_server

    server = await start_server(smollm2, lora_dir=str(next(iter(adapters.values())).parent), max_loras=max_loras)
    try:
        yield server
    finally:
        registry = server.app[ENGINE].registry
        for name in list(registry.names()):
            registry.unload(name)
        await server.close()
