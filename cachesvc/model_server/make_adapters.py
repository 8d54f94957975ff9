"""``cachesvc make-adapters``: train one LoRA adapter per text domain for SmolLM2 and show that each one helps
most on its own domain (held-out loss of the base model and of every adapter on every domain)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cachesvc.model_server.adapter_corpora import DOMAINS, domain_texts, split

DEFAULT_STEPS = 12
DEFAULT_RANK = 8
DEFAULT_LAST_LAYERS = 8
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    parser.add_argument("--out", required=True, type=Path, help="directory that receives one adapter per domain")
    parser.add_argument("--domains", nargs="+", choices=DOMAINS, default=list(DOMAINS))
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="optimiser steps per adapter")
    parser.add_argument("--rank", type=int, default=DEFAULT_RANK)
    parser.add_argument("--last-layers", type=int, default=DEFAULT_LAST_LAYERS,
                        help="adapt only the last N decoder layers (0: all of them)")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--eval-windows", type=int, default=4, help="held-out windows per domain in the table")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    """Train the adapters into ``args.out/<domain>`` and print the held-out loss table; 0 if every adapter is
    best on its own domain, 1 otherwise."""
    import torch

    from cachesvc.model_server.adapter_training import heldout_loss, train_lora_adapter
    from cachesvc.model_server.adapters import AdapterRegistry
    from cachesvc.model_server.hf_model import load_smollm2

    started = time.perf_counter()
    model, tokenizer = load_smollm2()
    splits = {domain: split(domain_texts(domain)) for domain in args.domains}
    n_layers = model.config.num_hidden_layers
    layers = range(n_layers - args.last_layers, n_layers) if 0 < args.last_layers < n_layers else None
    for domain, (train, heldout) in splits.items():
        report = train_lora_adapter(
            model, tokenizer, train, args.out / domain, rank=args.rank, alpha=2 * args.rank, target_modules=TARGETS,
            steps=args.steps, lr=args.lr, seq_len=args.seq_len, batch_size=args.batch_size, seed=args.seed,
            layers=layers, heldout=heldout, eval_windows=args.eval_windows,
        )
        print(f"trained {domain}: {report.steps} steps in {report.train_seconds:.1f} s, held-out loss "
              f"{report.loss_before:.3f} -> {report.loss_after:.3f}", flush=True)

    registry = AdapterRegistry(model, max_loaded=len(args.domains))
    for domain in args.domains:
        registry.load(domain, str(args.out / domain))
    table: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        for name in [None, *args.domains]:
            with registry.active(name) as active:
                table[name or "base"] = {
                    domain: heldout_loss(active, tokenizer, heldout, seq_len=args.seq_len,
                                         max_windows=args.eval_windows)
                    for domain, (_, heldout) in splits.items()
                }
    print(format_table(table, list(args.domains)))
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0 if own_domain_best(table, list(args.domains)) else 1


def format_table(table: dict[str, dict[str, float]], domains: list[str]) -> str:
    """Rows: base and each adapter; columns: held-out loss per domain (lower is better)."""
    lines = ["held-out loss (nats/token)  " + "".join(f"{d:>10}" for d in domains)]
    for row, losses in table.items():
        lines.append(f"{row:<28}" + "".join(f"{losses[d]:>10.3f}" for d in domains))
    return "\n".join(lines)


def own_domain_best(table: dict[str, dict[str, float]], domains: list[str]) -> bool:
    """Whether, on every domain, that domain's adapter has the lowest loss of all rows."""
    return all(min(table, key=lambda row: table[row][d]) == d for d in domains)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cachesvc make-adapters", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
