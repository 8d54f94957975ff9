from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

VOCAB = 97


def tiny_model(attn_implementation: str = "sdpa", layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=512,
        attn_implementation=attn_implementation,
    )
    model = LlamaForCausalLM(cfg).eval()
    # Sharper attention than the default init, so that scores (and head-wise budgets) differ between heads.
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(8.0)
            layer.self_attn.k_proj.weight.mul_(4.0)
    return model


@pytest.fixture(autouse=True)
def _torch_reference_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/kernels switches the Triton interpreter on for the whole process; these tests check the policies, not
    the kernels (tested there against the same references), so they use the fast torch references on the CPU."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")


@pytest.fixture(scope="session")
def model() -> LlamaForCausalLM:
    return tiny_model()


@pytest.fixture(scope="session")
def eager_model() -> LlamaForCausalLM:
    return tiny_model("eager")


@pytest.fixture
def prompt() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randint(0, VOCAB, (2, 120), generator=gen)
