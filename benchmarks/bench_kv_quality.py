"""KV-eviction quality on the real SmolLM2-135M-Instruct (CPU, offline).

Two measurements, each for every policy x budget (fraction of the context kept, window included):

1. **Retrieval** (needle / pass-key, RULER-like, generated locally): ``n_needles`` "The pass key of <name> is
   <5 digits>." lines hidden in filler text (Python's own documentation, ``pydoc_data.topics``); the question is
   appended *uncompressed* after the compressed context. Score: greedy decoding gives exactly the pass key
   (checked in one teacher-forced forward: every answer token is the argmax).
2. **Fidelity on natural text**: the context is the first ``L`` tokens of a documentation text; the next
   ``--cont`` tokens are teacher-forced on the compressed and on the full cache; reported: mean KL(full ||
   compressed) of the next-token distributions (nats) and greedy top-1 agreement.

Each context is prefilled **once** (full cache); every policy is applied to a copy of that cache
(``compress_cache``, identical to compressing during prefill, tested), so prefill cost is paid once per context.

Usage::

    python benchmarks/bench_kv_quality.py --lengths 1024 2048 --trials 4 --budgets 0.1 0.2 0.4 \
        --out benchmarks/results/kv_quality.json
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from cachesvc.hf_model import load_smollm2
from cachesvc.policies.kv import KV_POLICIES, make_policy
from cachesvc.policies.kv.apply import compress_cache, headwise_masking, record_prefill_inputs

NAMES = ["Alice", "Bruno", "Chiara", "Dmitri", "Esther", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kemal", "Lena"]


def doc_text() -> str:
    import pydoc_data.topics as topics

    return "\n\n".join(topics.topics[k] for k in sorted(topics.topics))


def retrieval_case(tok, filler_ids: list[int], length: int, n_needles: int, rng: random.Random):
    """Context of ~``length`` tokens with ``n_needles`` pass keys at random depths; question about one of them."""
    names = rng.sample(NAMES, n_needles)
    keys = {n: f"{rng.randint(10000, 99999)}" for n in names}
    needles = [tok(f"\nThe pass key of {n} is {keys[n]}. Remember it.\n", add_special_tokens=False).input_ids
               for n in names]
    body = length - sum(len(x) for x in needles)
    start = rng.randrange(0, len(filler_ids) - body)
    ctx = list(filler_ids[start:start + body])
    # depths between 5% and 85% of the context (the tail is the observation window's neighbourhood)
    for pos, nid in sorted(((int(body * rng.uniform(0.05, 0.85)), nid) for nid in needles), reverse=True):
        ctx[pos:pos] = nid
    target = rng.choice(names)
    q = tok(f"\n\nQuestion: what is the pass key of {target}?\nAnswer: The pass key of {target} is",
            add_special_tokens=False).input_ids
    a = tok(f" {keys[target]}.", add_special_tokens=False).input_ids
    return torch.tensor([ctx]), torch.tensor([q]), torch.tensor([a])


def fork(cache: DynamicCache) -> DynamicCache:
    """A new cache whose layers share the full tensors: pruning and appending replace tensors, never write into
    them, so the full prefill stays intact (cheaper than a deep copy, and lets value norms be memoised)."""
    new = copy.copy(cache)
    new.layers = [copy.copy(layer) for layer in cache.layers]
    return new


_VNORM_MEMO: dict = {}


def memoise_value_norm() -> None:
    """``||v W_O||_1`` depends only on the (shared) full values, not on the policy or the budget: compute it once
    per layer and context (the CPU fallback of the kernel is the benchmark's main cost otherwise)."""
    import cachesvc.policies.kv.criticalkv as ckv

    raw = ckv.value_norm

    def cached(values, weight, group):
        key = (values.data_ptr(), tuple(values.shape), weight.data_ptr())
        if key not in _VNORM_MEMO:
            _VNORM_MEMO[key] = raw(values, weight, group)
        return _VNORM_MEMO[key]

    ckv.value_norm = cached


@torch.no_grad()
def prefill(model, ids):
    cache = DynamicCache(config=model.config)
    with record_prefill_inputs(model) as captured:
        model(input_ids=ids, past_key_values=cache, use_cache=True)
    return cache, captured


@torch.no_grad()
def continue_on(model, cache, ids, start_pos: int):
    pos = torch.arange(start_pos, start_pos + ids.shape[1]).unsqueeze(0)
    with headwise_masking(model):
        return model(input_ids=ids, past_key_values=cache, position_ids=pos, use_cache=True).logits


@torch.no_grad()
def answers_exactly(model, cache, q_ids, a_ids, start_pos: int) -> bool:
    """Whether greedy decoding after the question yields exactly ``a_ids``: teacher-force question + answer in one
    forward and check that every answer token is the argmax (equivalent to greedy decoding, one forward)."""
    logits = continue_on(model, cache, torch.cat([q_ids, a_ids], 1), start_pos)
    pred = logits[0, q_ids.shape[1] - 1:-1].argmax(-1)
    return bool((pred == a_ids[0]).all())


def run(args) -> dict:
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model, tok = load_smollm2()
    memoise_value_norm()
    text_ids = tok(doc_text(), add_special_tokens=False).input_ids
    configs = [("full", None)] + [(p, b) for p in args.policies for b in args.budgets]
    res: dict = {"retrieval": {}, "fidelity": {}, "meta": vars(args).copy()}
    rng = random.Random(args.seed)
    t0 = time.time()
    for L in args.lengths:
        # --- retrieval
        hits = {f"{p}@{b}": 0 for p, b in configs}
        for trial in range(args.trials):
            ctx, q, a = retrieval_case(tok, text_ids, L, args.needles, rng)
            _VNORM_MEMO.clear()
            full, captured = prefill(model, ctx)
            for p, b in configs:
                cache = fork(full)
                if p != "full":
                    pol = make_policy(p, compression_ratio=1.0 - b, window_size=args.window)
                    compress_cache(model, cache, pol, captured)
                hits[f"{p}@{b}"] += int(answers_exactly(model, cache, q, a, ctx.shape[1]))
            print(f"[{time.time() - t0:6.0f}s] retrieval L={L} trial {trial + 1}/{args.trials}", flush=True)
        res["retrieval"][L] = {k: v / args.trials for k, v in hits.items()}
        # --- fidelity on natural text
        kl = {f"{p}@{b}": [] for p, b in configs if p != "full"}
        agree = {k: [] for k in kl}
        for trial in range(args.text_trials):
            start = rng.randrange(0, len(text_ids) - L - args.cont)
            ctx = torch.tensor([text_ids[start:start + L]])
            cont = torch.tensor([text_ids[start + L:start + L + args.cont]])
            _VNORM_MEMO.clear()
            full, captured = prefill(model, ctx)
            ref = continue_on(model, fork(full), cont, L).float().log_softmax(-1)
            for p, b in configs:
                if p == "full":
                    continue
                cache = fork(full)
                compress_cache(model, cache, make_policy(p, compression_ratio=1.0 - b, window_size=args.window),
                               captured)
                lp = continue_on(model, cache, cont, L).float().log_softmax(-1)
                kl[f"{p}@{b}"].append(float(F.kl_div(lp, ref, log_target=True, reduction="none").sum(-1).mean()))
                agree[f"{p}@{b}"].append(float((lp.argmax(-1) == ref.argmax(-1)).float().mean()))
            print(f"[{time.time() - t0:6.0f}s] fidelity L={L} trial {trial + 1}/{args.text_trials}", flush=True)
        if args.text_trials:
            res["fidelity"][L] = {k: {"kl": sum(v) / len(v), "top1_agree": sum(agree[k]) / len(agree[k])}
                                  for k, v in kl.items()}
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(res, indent=1))
    res["meta"]["seconds"] = time.time() - t0
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return res


def print_tables(res: dict) -> None:
    for L, row in res["retrieval"].items():
        print(f"\nretrieval accuracy, L={L}: " + ", ".join(f"{k}={v:.2f}" for k, v in row.items()))
    for L, row in res["fidelity"].items():
        print(f"\nfidelity, L={L}: " + ", ".join(f"{k}: KL={v['kl']:.3f} agree={v['top1_agree']:.2f}"
                                                for k, v in row.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048])
    ap.add_argument("--budgets", type=float, nargs="+", default=[0.1, 0.2, 0.4], help="fraction kept")
    ap.add_argument("--policies", nargs="+", default=sorted(KV_POLICIES), choices=sorted(KV_POLICIES))
    ap.add_argument("--trials", type=int, default=4, help="retrieval contexts per length")
    ap.add_argument("--text-trials", type=int, default=2, help="natural-text contexts per length")
    ap.add_argument("--needles", type=int, default=2)
    ap.add_argument("--cont", type=int, default=64, help="teacher-forced continuation tokens")
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated contexts")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    print_tables(run(args))


if __name__ == "__main__":
    main()
