"""Token choice: greedy, seeded sampling, nucleus truncation and OpenAI's penalties."""

from __future__ import annotations

import torch

from cachesvc.model_server.sampling import SamplingParams, TokenSampler


def logits(seed: int = 0, vocab: int = 50) -> torch.Tensor:
    return torch.randn(vocab, generator=torch.Generator().manual_seed(seed)) * 3


def draws(params: SamplingParams, n: int = 40, vocab: int = 50) -> list[int]:
    sampler = TokenSampler(params, vocab)
    return [sampler.choose(logits(i, vocab)) for i in range(n)]


def test_temperature_zero_is_argmax() -> None:
    assert draws(SamplingParams(max_tokens=1, temperature=0.0)) == [int(logits(i).argmax()) for i in range(40)]


def test_a_seed_reproduces_a_sample_and_another_seed_differs() -> None:
    a = draws(SamplingParams(max_tokens=1, temperature=1.0, seed=7))
    assert a == draws(SamplingParams(max_tokens=1, temperature=1.0, seed=7))
    assert a != draws(SamplingParams(max_tokens=1, temperature=1.0, seed=8))
    assert a != [int(logits(i).argmax()) for i in range(40)]  # it does sample


def test_tiny_top_p_keeps_only_the_most_likely_token() -> None:
    assert draws(SamplingParams(max_tokens=1, temperature=1.5, top_p=1e-6, seed=1)) == [
        int(logits(i).argmax()) for i in range(40)]


def test_top_p_never_draws_outside_the_nucleus() -> None:
    row = logits(3)
    probs = torch.softmax(row, -1)
    order = probs.argsort(descending=True)
    nucleus = set(order[: int((probs[order].cumsum(-1) < 0.5).sum()) + 1].tolist())
    sampler = TokenSampler(SamplingParams(max_tokens=1, temperature=1.0, top_p=0.5, seed=2), 50)
    assert {sampler.choose(row) for _ in range(300)} <= nucleus


def test_frequency_penalty_discourages_repeats() -> None:
    row = torch.zeros(10)
    row[4] = 1.0
    plain = TokenSampler(SamplingParams(max_tokens=1, temperature=0.0), 10)
    assert [plain.choose(row) for _ in range(3)] == [4, 4, 4]
    penalised = TokenSampler(SamplingParams(max_tokens=1, temperature=0.0, frequency_penalty=2.0), 10)
    assert [penalised.choose(row) for _ in range(2)] == [4, 0]
    presence = TokenSampler(SamplingParams(max_tokens=1, temperature=0.0, presence_penalty=1.5), 10)
    assert [presence.choose(row) for _ in range(2)] == [4, 0]
