"""Train a small LoRA adapter on plain text and save it as a standard peft adapter directory.

Used to make the adapters the model server ships and the tests load: real weights with a measurable effect (lower
held-out loss on their own domain), made offline on the CPU in seconds to minutes.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cachesvc.model_server.adapter_corpora import split

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
MAX_TOKENS_PER_TEXT = 4096  # a few windows of each text are enough; tokenizing whole 60 kB files is wasted time


@dataclass
class TrainingReport:
    """What one training run did and how much it helped on held-out text."""

    out_dir: Path
    steps: int
    loss_before: float
    loss_after: float
    trainable_parameters: int
    train_seconds: float
    seconds: float


def token_windows(tokenizer: Any, texts: Sequence[str], seq_len: int) -> torch.Tensor:
    """``[n, seq_len]`` token windows cut from the texts joined by EOS (each text capped to a few windows)."""
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for text in texts:
        # Cut the text first: tokens are rarely shorter than 1 character, so this keeps every token we use.
        ids = tokenizer(text[: MAX_TOKENS_PER_TEXT * 8], add_special_tokens=False)["input_ids"][:MAX_TOKENS_PER_TEXT]
        stream += ids + ([eos] if eos is not None else [])
    n = len(stream) // seq_len
    if n == 0:
        raise ValueError(f"the texts hold {len(stream)} tokens, fewer than one window of {seq_len}")
    return torch.tensor(stream[: n * seq_len], dtype=torch.long).view(n, seq_len)


def _spread(windows: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` windows spread evenly over all of them, so an evaluation sees many texts, not the first few."""
    if len(windows) <= count:
        return windows
    return windows[torch.linspace(0, len(windows) - 1, count).round().long()]


@torch.no_grad()
def heldout_loss(
    model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], *, seq_len: int = 256, max_windows: int = 8,
    batch_size: int = 4,
) -> float:
    """Mean next-token cross-entropy (nats) of ``model`` on up to ``max_windows`` windows of ``texts``."""
    return _mean_loss(model, _spread(token_windows(tokenizer, texts, seq_len), max_windows), batch_size)


@torch.no_grad()
def _mean_loss(model: torch.nn.Module, windows: torch.Tensor, batch_size: int) -> float:
    was_training = model.training
    model.eval()
    total = 0.0
    for batch in windows.split(batch_size):
        total += float(model(input_ids=batch, labels=batch).loss) * len(batch)
    model.train(was_training)
    return total / len(windows)


def train_lora_adapter(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    out_dir: str | Path,
    *,
    rank: int = 8,
    alpha: int = 16,
    target_modules: Sequence[str] = DEFAULT_TARGETS,
    steps: int = 20,
    lr: float = 2e-3,
    seq_len: int = 256,
    batch_size: int = 2,
    seed: int = 0,
    layers: Sequence[int] | None = None,
    heldout: Sequence[str] | None = None,
    eval_windows: int = 8,
) -> TrainingReport:
    """Train a LoRA adapter on ``texts`` (a copy of ``model`` is trained; ``model`` is untouched), save it to
    ``out_dir``; the report gives the loss on ``heldout`` (default: a held-out split of ``texts``) before and after.
    ``layers`` limits the adapter to those decoder layers (adapting only the last few makes backward cheap).
    """
    from peft import LoraConfig, get_peft_model

    started = time.perf_counter()
    if heldout is None:
        texts, heldout = split(list(texts))
    torch.manual_seed(seed)
    train = token_windows(tokenizer, texts, seq_len)
    evaluation = _spread(token_windows(tokenizer, heldout, seq_len), eval_windows)

    work = copy.deepcopy(model)
    loss_before = _mean_loss(work, evaluation, batch_size=4)
    config = LoraConfig(
        r=rank, lora_alpha=alpha, target_modules=list(target_modules), lora_dropout=0.0, bias="none",
        task_type="CAUSAL_LM", layers_to_transform=list(layers) if layers is not None else None,
    )
    with warnings.catch_warnings():
        # peft asks transformers 5.23 for a renamed attribute; the FutureWarning is theirs, not ours.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(work, config)
    train_started = time.perf_counter()
    _optimise(peft_model, train, steps=steps, lr=lr, batch_size=batch_size, seed=seed)
    train_seconds = time.perf_counter() - train_started
    loss_after = _mean_loss(peft_model, evaluation, batch_size=4)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(out))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    return TrainingReport(out, steps, loss_before, loss_after, trainable, train_seconds,
                          time.perf_counter() - started)


def _optimise(model: torch.nn.Module, windows: torch.Tensor, *, steps: int, lr: float, batch_size: int,
              seed: int) -> None:
    """AdamW on random batches of windows, drawn from a generator seeded with ``seed`` (deterministic)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        batch = windows[torch.randint(len(windows), (batch_size,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
    model.eval()
