"""KV-eviction quality on the real SmolLM2-135M-Instruct (CPU, offline).

Four measurements, each for every policy x budget (fraction of the context kept, window included) and context
length, always next to the full cache's value on the same contexts:

1. **Retrieval** (needle / pass-key, RULER-like, generated locally): ``n_needles`` "The pass key of <name> is
   <5 digits>." lines hidden in filler text (Python's own documentation, ``pydoc_data.topics``); one question per
   needle, appended *uncompressed* after the compressed context. Score: greedy decoding gives exactly the pass key
   (checked in one teacher-forced forward: every answer token is the argmax).
2. **Variable tracking** (RULER-style multi-hop): ``--vt-chains`` chains ``VAR QXK = 48213``, ``VAR MBT = VAR
   QXK``, ... of ``--vt-hops`` links each, statements in chain order at random depths of the filler (the other
   chains are the distractors). For every chain and every depth ``d`` in ``0..hops`` the question (uncompressed)
   asks the value of the chain's variable ``d`` links away from the number ("VT-d hop"); scored like retrieval.
3. **Fidelity on natural text**: the context is ``L`` tokens of documentation text; the next ``--cont`` tokens are
   teacher-forced on the compressed and on the full cache; reported: mean KL(full || compressed) of the
   next-token distributions (nats) and greedy top-1 agreement.

Each context is prefilled **once** (full cache); every policy is applied to a copy of that cache
(``compress_cache``, identical to compressing during prefill, tested), so prefill cost is paid once per context.
Uncertainty: ± standard error over contexts (questions of one context are averaged first: they share a cache).

Usage::

    python benchmarks/bench_kv_quality.py --lengths 1024 2048 --trials 4 --text-trials 3 --budgets 0.1 0.2 0.4 \
        --threads 1 --out /tmp/kv_quality.json
    python benchmarks/bench_kv_quality.py --report /tmp/kv_quality.json   # markdown tables of a saved run

``--kv-heads 9`` first gives every layer one KV head per query head (``cachesvc.policies.kv.head_expansion``): the model
computes the same function, and head-wise budgets move entries between 9 heads of a layer instead of 3.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import string
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from cachesvc.model_server.hf_model import load_smollm2
from cachesvc.policies.kv import KV_POLICIES, make_policy
from cachesvc.policies.kv.apply import compress_cache, headwise_masking, record_prefill_inputs
from cachesvc.policies.kv.head_expansion import expand_kv_heads

NAMES = ["Alice", "Bruno", "Chiara", "Dmitri", "Esther", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kemal", "Lena"]


def doc_text() -> str:
    import pydoc_data.topics as topics

    return "\n\n".join(topics.topics[k] for k in sorted(topics.topics))


def _insert(tok, filler_ids: list[int], length: int, groups: list[list[list[int]]], rng: random.Random) -> list[int]:
    """Filler of ``length`` tokens (needles included) with every group's snippets inserted at random depths between
    5% and 85% (the tail is the observation window's neighbourhood); snippets of one group stay in order."""
    body = length - sum(len(x) for g in groups for x in g)
    start = rng.randrange(0, len(filler_ids) - body)
    ctx = list(filler_ids[start:start + body])
    ins = []
    for g in groups:
        depths = sorted(int(body * rng.uniform(0.05, 0.85)) for _ in g)
        ins += [(d, k, x) for k, (d, x) in enumerate(zip(depths, g))]
    # insert from the back; at equal depths the later snippet of a group goes first, so a group keeps its order
    for d, _, x in sorted(ins, key=lambda t: (t[0], t[1]), reverse=True):
        ctx[d:d] = x
    return ctx


def retrieval_case(tok, filler_ids: list[int], length: int, n_needles: int, rng: random.Random):
    """Context of ~``length`` tokens with ``n_needles`` pass keys at random depths; one question per needle."""
    enc = lambda s: tok(s, add_special_tokens=False).input_ids
    names = rng.sample(NAMES, n_needles)
    keys = {n: f"{rng.randint(10000, 99999)}" for n in names}
    needles = [[enc(f"\nThe pass key of {n} is {keys[n]}. Remember it.\n")] for n in names]
    ctx = _insert(tok, filler_ids, length, needles, rng)
    qa = [(enc(f"\n\nQuestion: what is the pass key of {n}?\nAnswer: The pass key of {n} is"), enc(f" {keys[n]}."))
          for n in names]
    return torch.tensor([ctx]), qa


def vt_case(tok, filler_ids: list[int], length: int, hops: int, n_chains: int, rng: random.Random):
    """RULER-style variable tracking: ``n_chains`` chains ``VAR A = 12345``, ``VAR B = VAR A``, ... (``hops`` links
    each) in filler text. Questions: for every chain and depth d in 0..hops, the value of the variable d links away
    from the number. Returns ``(ctx, [(depth, q_ids, a_ids), ...])``."""
    enc = lambda s: tok(s, add_special_tokens=False).input_ids
    names: list[str] = []
    while len(names) < n_chains * (hops + 1):
        v = "".join(rng.choice(string.ascii_uppercase) for _ in range(3))
        if v not in names and v != "VAR":
            names.append(v)
    chains, groups = [], []
    for c in range(n_chains):
        vs = names[c * (hops + 1):(c + 1) * (hops + 1)]
        val = f"{rng.randint(10000, 99999)}"
        chains.append((vs, val))
        groups.append([enc(f"\nVAR {vs[0]} = {val}\n")] + [enc(f"\nVAR {vs[i]} = VAR {vs[i - 1]}\n")
                                                            for i in range(1, hops + 1)])
    ctx = _insert(tok, filler_ids, length, groups, rng)
    qa = []
    for vs, val in chains:
        for d, v in enumerate(vs):
            q = enc("\n\nThe text above assigns variables: VAR X = VAR Y gives X the value of Y.\n"
                    f"Question: what is the value of VAR {v}?\nAnswer: The value of VAR {v} is")
            qa.append((d, q, enc(f" {val}.")))
    return torch.tensor([ctx]), qa


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


def policy_spec(spec: str) -> tuple[str, dict[str, float]]:
    """``name`` or ``name:field=value,field=value`` (an ablation, e.g. ``defensivekv:critical_mass=0`` or
    ``layer_defensivekv:layer_group=3``); integers stay integers."""
    name, _, rest = spec.partition(":")
    if name not in KV_POLICIES:
        raise argparse.ArgumentTypeError(f"unknown policy {name!r}; known: {', '.join(sorted(KV_POLICIES))}")
    fields = {}
    for item in filter(None, rest.split(",")):
        field, eq, value = item.partition("=")
        if not eq:
            raise argparse.ArgumentTypeError(f"{spec!r}: expected field=value, got {item!r}")
        try:
            fields[field] = int(value)
        except ValueError:
            fields[field] = float(value)
    make_policy(name, **fields)  # unknown fields and bad values fail here, before any work
    return name, fields


def config_keys(args) -> list[tuple[str, str | None, float | None]]:
    return [("full", None, None)] + [(f"{p}@{b}", p, b) for p in args.policies for b in args.budgets]


def compressed_caches(model, full, captured, args):
    """Yield ``(key, cache)`` for the full cache and every policy x budget (each a fork of ``full``)."""
    for key, p, b in config_keys(args):
        cache = fork(full)
        if p is not None:
            name, fields = policy_spec(p)
            policy = make_policy(name, compression_ratio=1.0 - b, window_size=args.window, **fields)
            compress_cache(model, cache, policy, captured)
        yield key, cache


def load_model(args):
    """SmolLM2, with its KV heads expanded to ``--kv-heads`` (same function, wider cache) when asked."""
    model, tok = load_smollm2()
    if args.kv_heads:
        expand_kv_heads(model, args.kv_heads)
    return model, tok


def run(args) -> dict:
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model, tok = load_model(args)
    memoise_value_norm()
    text_ids = tok(doc_text(), add_special_tokens=False).input_ids
    keys = [k for k, _, _ in config_keys(args)]
    # res["acc"][L][task][config] = per-context lists of 0/1 (one entry per question, same order for every config)
    res: dict = {"acc": {}, "fidelity": {}, "meta": vars(args).copy()}
    rng = random.Random(args.seed)
    t0 = time.time()

    def save() -> None:
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(res, indent=1))

    for L in args.lengths:
        acc: dict = {}
        res["acc"][str(L)] = acc
        for trial in range(args.trials):
            cases = []
            if args.needles:
                ctx, qa = retrieval_case(tok, text_ids, L, args.needles, rng)
                cases.append((ctx, [("retrieval", q, a) for q, a in qa]))
            if args.vt_chains:
                ctx, qa = vt_case(tok, text_ids, L, args.vt_hops, args.vt_chains, rng)
                cases.append((ctx, [(f"vt{d}", q, a) for d, q, a in qa]))
            for ctx, qa in cases:
                _VNORM_MEMO.clear()
                full, captured = prefill(model, ctx)
                qt = [(task, torch.tensor([q]), torch.tensor([a])) for task, q, a in qa]
                for key, cache in compressed_caches(model, full, captured, args):
                    per: dict = {}
                    for task, q, a in qt:
                        per.setdefault(task, []).append(int(answers_exactly(model, fork(cache), q, a, ctx.shape[1])))
                    for task, hits in per.items():
                        acc.setdefault(task, {k: [] for k in keys})[key].append(hits)
                del full, captured
            save()
            print(f"[{time.time() - t0:6.0f}s] tasks L={L} trial {trial + 1}/{args.trials} "
                  + " ".join(f"{t}:full={_mean(_flat(v['full'])):.2f}" for t, v in acc.items()), flush=True)
        # --- fidelity on natural text
        kl = {k: [] for k in keys if k != "full"}
        agree = {k: [] for k in kl}
        for trial in range(args.text_trials):
            start = rng.randrange(0, len(text_ids) - L - args.cont)
            ctx = torch.tensor([text_ids[start:start + L]])
            cont = torch.tensor([text_ids[start + L:start + L + args.cont]])
            _VNORM_MEMO.clear()
            full, captured = prefill(model, ctx)
            ref = continue_on(model, fork(full), cont, L).float().log_softmax(-1)
            for key, cache in compressed_caches(model, full, captured, args):
                if key == "full":
                    continue
                lp = continue_on(model, cache, cont, L).float().log_softmax(-1)
                kl[key].append(float(F.kl_div(lp, ref, log_target=True, reduction="none").sum(-1).mean()))
                agree[key].append(float((lp.argmax(-1) == ref.argmax(-1)).float().mean()))
            del full, captured
            res["fidelity"][str(L)] = {"kl": kl, "agree": agree}
            save()
            print(f"[{time.time() - t0:6.0f}s] fidelity L={L} trial {trial + 1}/{args.text_trials}", flush=True)
    res["meta"]["seconds"] = time.time() - t0
    save()
    return res


def critical_share(args) -> str:
    """Markdown table: the share of the kept prefix entries that the critical stage forces (scored ``MUST_KEEP``),
    for the policies that have one, on one documentation context per length (``--critical-share``)."""
    from cachesvc.policies.kv.base import MUST_KEEP

    torch.set_num_threads(args.threads)
    model, tok = load_model(args)
    text_ids = tok(doc_text(), add_special_tokens=False).input_ids
    rng = random.Random(args.seed)
    names = [n for n in ("criticalkv", "defensivekv", "layer_defensivekv") if n in args.policies]
    lines = ["| L | keep | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 2)]
    for L in args.lengths:
        start = rng.randrange(0, len(text_ids) - L)
        full, captured = prefill(model, torch.tensor([text_ids[start:start + L]]))
        for b in args.budgets:
            cells = []
            for name in names:
                policy = make_policy(name, compression_ratio=1.0 - b, window_size=args.window)
                report = compress_cache(model, fork(full), policy, captured, record_scores=True)
                forced = sum(int(((r.scores >= MUST_KEEP) & r.keep).sum()) for r in report.layers.values())
                kept = sum(int(r.keep.sum()) for r in report.layers.values())
                cells.append(f"{forced / kept:.0%}")
            lines.append(f"| {L:,} | {b:.0%} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------- report
def pool_results(results: list[dict]) -> dict:
    """One result from several runs: the per-context lists of each length, task and configuration concatenated
    (contexts of different seeds are independent samples). The runs must share policies, budgets and settings."""
    def setting(res: dict, field: str) -> object:
        return res["meta"].get(field, 0 if field == "kv_heads" else None)   # runs before --kv-heads had 3

    first = results[0]
    for other in results[1:]:
        for field in ("policies", "budgets", "window", "cont", "kv_heads"):
            if setting(other, field) != setting(first, field):
                raise SystemExit(f"cannot pool runs with different {field}: {setting(first, field)} vs "
                                 f"{setting(other, field)}")
    pooled: dict = {"acc": {}, "fidelity": {}, "meta": {**first["meta"],
                                                         "seeds": [r["meta"].get("seed") for r in results]}}
    for res in results:
        for L, by_task in res["acc"].items():
            for task, by_key in by_task.items():
                for key, per_ctx in by_key.items():
                    pooled["acc"].setdefault(L, {}).setdefault(task, {}).setdefault(key, []).extend(per_ctx)
        for L, fid in res["fidelity"].items():
            for metric, by_key in fid.items():
                for key, values in by_key.items():
                    pooled["fidelity"].setdefault(L, {}).setdefault(metric, {}).setdefault(key, []).extend(values)
    return pooled


def _flat(per_ctx: list[list[int]]) -> list[int]:
    return [x for c in per_ctx for x in c]


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _se(xs: list[float]) -> float:
    if len(xs) < 2:
        return float("nan")
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs))


def acc_stats(per_ctx: list[list[int]]) -> tuple[float, float]:
    """Accuracy over all questions and its standard error over contexts (per-context means)."""
    return _mean(_flat(per_ctx)), _se([_mean(c) for c in per_ctx])


def kept_fraction(policy: list[list[int]], full: list[list[int]]) -> float:
    """Fraction of the full cache's correct answers that the policy also gets right."""
    pairs = [(p, f) for p, f in zip(_flat(policy), _flat(full)) if f]
    return _mean([p for p, _ in pairs]) if pairs else float("nan")


TASK_TITLES = {"retrieval": "retrieval", "kl": "KL(full‖c)", "agree": "top-1 agree"}


def task_title(t: str) -> str:
    return TASK_TITLES.get(t, f"VT {t[2:]}-hop" if t.startswith("vt") else t)


def per_context_losses(res: dict, L: str) -> dict[str, dict[str, list[float]]]:
    """Per-context quality loss versus the full cache, per task and config: accuracy drop (questions of a context
    averaged), KL, 1 - agreement. Contexts are aligned across configs (paired)."""
    out: dict[str, dict[str, list[float]]] = {}
    for task, by in res["acc"].get(L, {}).items():
        full = [_mean(c) for c in by["full"]]
        out[task] = {k: [f - _mean(c) for f, c in zip(full, v)] for k, v in by.items() if k != "full"}
    fid = res["fidelity"].get(L)
    if fid:
        out["kl"] = {k: list(v) for k, v in fid["kl"].items()}
        out["agree"] = {k: [1.0 - x for x in v] for k, v in fid["agree"].items()}
    return out


def ratio_with_ci(mine: list[float], ref: list[float], n_boot: int = 2000) -> str:
    """``mean(mine) / mean(ref)`` with a 90% paired bootstrap interval over contexts; '-' when ``ref`` is ~0."""
    if not ref or _mean(ref) <= 1e-9:
        return "-"
    rng = random.Random(0)
    n, ratios = len(ref), []
    for _ in range(n_boot):
        idx = [rng.randrange(n) for _ in range(n)]
        r = sum(ref[i] for i in idx)
        if r > 1e-9:
            ratios.append(sum(mine[i] for i in idx) / r)
    ratios.sort()
    lo, hi = ratios[int(0.05 * len(ratios))], ratios[int(0.95 * len(ratios)) - 1]
    return f"{_mean(mine) / _mean(ref):.2f} [{lo:.2f}, {hi:.2f}]"


def markdown_tables(res: dict) -> str:
    m = res["meta"]
    lines = []
    for L in sorted(res["acc"].keys() | res["fidelity"].keys(), key=int):
        by_task = res["acc"].get(L, {})
        fid = res["fidelity"].get(L)
        tasks = sorted(by_task)
        n_ctx = {t: len(by_task[t]["full"]) for t in tasks}
        n_q = {t: len(_flat(by_task[t]["full"])) for t in tasks}
        desc = ", ".join(f"{task_title(t)}: {n_ctx[t]} contexts / {n_q[t]} questions" for t in tasks)
        if fid:
            desc += f", text: {len(next(iter(fid['kl'].values())))} contexts x {m['cont']} tokens"
        lines.append(f"\n**L = {L} tokens** ({desc}). Accuracy cells: policy ± SE [full cache] (kept = share of the "
                     "full cache's correct answers the policy keeps); KL in nats/token ± SE; agreement ± SE.\n")
        head = ["policy", "keep"] + [task_title(t) for t in tasks] + (["KL(full‖c)", "top-1 agree"] if fid else [])
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for key in next(iter(by_task.values())) if by_task else fid["kl"]:
            if key == "full":
                continue
            p, b = key.split("@")
            row = [p, f"{float(b):.0%}"]
            for t in tasks:
                a, se = acc_stats(by_task[t][key])
                fa = _mean(_flat(by_task[t]["full"]))
                kept = kept_fraction(by_task[t][key], by_task[t]["full"])
                row.append(f"{a:.2f} ± {se:.2f} [{fa:.2f}] kept {kept:.0%}")
            if fid:
                row.append(f"{_mean(fid['kl'][key]):.3f} ± {_se(fid['kl'][key]):.3f} [0]")
                row.append(f"{_mean(fid['agree'][key]):.2f} ± {_se(fid['agree'][key]):.2f} [1]")
            lines.append("| " + " | ".join(row) + " |")
    # summary: loss at 20% relative to SnapKV
    budget = 0.2
    Ls = sorted(res["acc"].keys() | res["fidelity"].keys(), key=int)
    pols = m["policies"]
    if "snapkv" in pols and budget in m["budgets"]:
        lines.append(f"\n**Quality loss at keep {budget:.0%} relative to SnapKV's** (loss = full-cache accuracy minus "
                     "the policy's, KL, or 1 - agreement; ratio < 1 = less loss than SnapKV; [90% paired "
                     "bootstrap interval over contexts]; '-' where SnapKV loses nothing measurable)\n")
        cols = [(L, t) for L in Ls for t in per_context_losses(res, L)]
        lines.append("| policy | " + " | ".join(f"{task_title(t)} L={L}" for L, t in cols) + " |")
        lines.append("|" + "---|" * (len(cols) + 1))
        for p in pols:
            row = [p]
            for L, t in cols:
                lo = per_context_losses(res, L)[t]
                ref, mine = lo.get(f"snapkv@{budget}"), lo.get(f"{p}@{budget}")
                row.append("-" if ref is None or mine is None else ratio_with_ci(mine, ref))
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048])
    ap.add_argument("--budgets", type=float, nargs="+", default=[0.1, 0.2, 0.4], help="fraction kept")
    ap.add_argument("--policies", nargs="+", default=list(KV_POLICIES),
                    help="registered names, or name:field=value,... for an ablation (defensivekv:critical_mass=0)")
    ap.add_argument("--trials", type=int, default=4, help="retrieval and variable-tracking contexts per length")
    ap.add_argument("--text-trials", type=int, default=2, help="natural-text contexts per length")
    ap.add_argument("--needles", type=int, default=2, help="pass keys per retrieval context (0: no retrieval)")
    ap.add_argument("--vt-chains", type=int, default=3, help="chains per variable-tracking context (0: none)")
    ap.add_argument("--vt-hops", type=int, default=1, help="links per chain (VAR B = VAR A)")
    ap.add_argument("--cont", type=int, default=64, help="teacher-forced continuation tokens")
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated contexts")
    ap.add_argument("--out", default="")
    ap.add_argument("--report", nargs="+", default=[],
                    help="print the tables of saved result JSONs and exit; several runs (other seeds, same "
                         "policies and budgets) are pooled context by context")
    ap.add_argument("--kv-heads", type=int, default=0,
                    help="expand the model's 3 KV heads to this many (9: one per query head; the same function, a "
                         "cache laid out like multi-head attention's) before measuring")
    ap.add_argument("--critical-share", action="store_true",
                    help="only print the share of kept entries forced by the critical stage, then exit")
    args = ap.parse_args()
    for spec in args.policies:
        try:
            policy_spec(spec)
        except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
            ap.error(f"--policies {spec}: {exc}")
    if args.report:
        print(markdown_tables(pool_results([json.loads(Path(p).read_text()) for p in args.report])))
        return
    if args.critical_share:
        print(critical_share(args))
        return
    print(markdown_tables(run(args)))


if __name__ == "__main__":
    main()
