"""The reference model server measured over real HTTP: time to first token, decode speed, adapter load/unload
time, and peak memory with and without KV eviction.

Each configuration runs `cachesvc model-server` as its own process (so its peak RSS is its own), streams
completions of several prompt lengths with greedy decoding, and reads the process's peak resident memory
(``VmHWM``) after loading and after the requests; the growth is what serving the requests cost.
Adapters come from ``--adapters DIR`` (made by ``cachesvc make-adapters --out DIR``).

    python benchmarks/bench_model_server.py --lengths 256 1024 4096 --new-tokens 32 --adapters /tmp/adapters
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_proxy import free_port, process, wait_ready

MODEL = "SmolLM2-135M-Instruct"


def filler(n_words: int) -> str:
    """Natural text of about ``n_words`` words (Python's own documentation, on every machine)."""
    import pydoc_data.topics as topics

    words = " ".join(topics.topics[k] for k in sorted(topics.topics)).split()
    return " ".join(words[:n_words])


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


async def stream_once(session: aiohttp.ClientSession, url: str, prompt: str, new_tokens: int,
                      model: str = MODEL, **extra: Any) -> dict[str, Any]:
    """One streamed greedy completion: TTFT, decode tokens/s, usage and the kv_cache report."""
    body = {"model": model, "prompt": prompt, "max_tokens": new_tokens, "temperature": 0, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}, **extra}
    started = time.perf_counter()
    first = last = None
    usage: dict[str, Any] = {}
    kv: dict[str, Any] = {}
    async with session.post(url + "/completions", json=body) as response:
        assert response.status == 200, await response.text()
        async for raw in response.content:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            now = time.perf_counter()
            if chunk.get("choices") and chunk["choices"][0].get("text"):
                first = first or now
                last = now
            usage = chunk.get("usage") or usage
            kv = chunk.get("kv_cache") or kv
    assert first is not None and last is not None
    n = usage["completion_tokens"]
    return {"ttft_s": first - started, "decode_tok_s": (n - 1) / (last - first) if last > first else float("nan"),
            "prompt_tokens": usage["prompt_tokens"], "completion_tokens": n, "kv": kv}


async def run_config(args: argparse.Namespace, policy: str | None) -> dict[str, Any]:
    port = free_port()
    cmd = ["model-server", "--port", str(port), "--threads", str(args.threads), "--max-loras", "8"]
    if policy:
        cmd += ["--kv-policy", policy, "--kv-budget", str(args.budget)]
    if args.adapters:
        cmd += ["--lora-dir", str(args.adapters)]
    url = f"http://127.0.0.1:{port}/v1"
    results: dict[str, Any] = {"policy": policy or "none", "lengths": {}}
    with process(cmd) as proc:
        timeout = aiohttp.ClientTimeout(total=1800)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await wait_ready(session, f"http://127.0.0.1:{port}/health", timeout_s=300)
            await stream_once(session, url, filler(20), 4)  # warm-up
            results["rss_loaded_mib"] = peak_rss_mib(proc.pid)
            for length in args.lengths:
                prompt = filler(int(length * 0.6))  # ~1.6 tokens per word in this text
                runs = [await stream_once(session, url, prompt, args.new_tokens) for _ in range(args.repeats)]
                results["lengths"][length] = {
                    "prompt_tokens": runs[0]["prompt_tokens"],
                    "ttft_s": statistics.median(r["ttft_s"] for r in runs),
                    "decode_tok_s": statistics.median(r["decode_tok_s"] for r in runs),
                    "kv": runs[0]["kv"],
                    "rss_peak_mib": peak_rss_mib(proc.pid),
                }
            if args.adapters and policy is None:
                results["adapters"] = await adapter_timings(session, url, Path(args.adapters), args.repeats)
    return results


async def adapter_timings(session: aiohttp.ClientSession, url: str, root: Path, repeats: int) -> dict[str, Any]:
    """Load, first use and unload of each adapter, over HTTP (median over ``repeats``)."""
    timings: dict[str, list[float]] = {"load_ms": [], "unload_ms": [], "ttft_with_adapter_s": []}
    names = sorted(p.name for p in root.iterdir() if (p / "adapter_config.json").is_file())
    for _ in range(repeats):
        for name in names:
            started = time.perf_counter()
            async with session.post(url + "/load_lora_adapter", json={"lora_name": name, "lora_path": name}) as r:
                assert r.status == 200, await r.text()
            timings["load_ms"].append((time.perf_counter() - started) * 1000)
            timings["ttft_with_adapter_s"].append(
                (await stream_once(session, url, filler(150), 4, model=name))["ttft_s"])
            started = time.perf_counter()
            async with session.post(url + "/unload_lora_adapter", json={"lora_name": name}) as r:
                assert r.status == 200, await r.text()
            timings["unload_ms"].append((time.perf_counter() - started) * 1000)
    return {"adapters": names, **{k: statistics.median(v) for k, v in timings.items()}}


def transformers_baseline(args: argparse.Namespace) -> dict[int, dict[str, float]]:
    """The same prompts through transformers' own ``generate`` in this process (no HTTP, no server): the floor
    the server's time to first token and decode speed compare with."""
    import torch

    from cachesvc.model_server.hf_model import load_smollm2

    torch.set_num_threads(args.threads)
    model, tokenizer = load_smollm2()
    out: dict[int, dict[str, float]] = {}

    def timed(ids: torch.Tensor, n: int) -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        return time.perf_counter() - started

    for length in args.lengths:
        ids = tokenizer(filler(int(length * 0.6)), return_tensors="pt")["input_ids"]
        first = statistics.median(timed(ids, 1) for _ in range(args.repeats))
        full = statistics.median(timed(ids, args.new_tokens) for _ in range(args.repeats))
        out[length] = {"prompt_tokens": ids.shape[1], "ttft_s": first,
                       "decode_tok_s": (args.new_tokens - 1) / max(full - first, 1e-9)}
    return out


def print_tables(all_results: list[dict[str, Any]], args: argparse.Namespace,
                 baseline: dict[int, dict[str, float]] | None) -> None:
    print(f"\nstreamed greedy completions, {args.new_tokens} new tokens, median of {args.repeats}, "
          f"{args.threads} torch thread(s)")
    if baseline:
        print("transformers generate() in-process (baseline): " + ", ".join(
            f"{b['prompt_tokens']} tok: TTFT {b['ttft_s']:.2f} s, decode {b['decode_tok_s']:.1f} tok/s"
            for b in baseline.values()))
    print(f"{'policy':<20}{'prompt tok':>11}{'TTFT s':>9}{'decode tok/s':>14}{'KV kept':>9}{'KV MiB':>9}"
          f"{'peak RSS +MiB':>15}")
    for res in all_results:
        for row in res["lengths"].values():
            kv = row["kv"]
            kept = kv["entries_kept"] / kv["entries_full"]
            print(f"{res['policy']:<20}{row['prompt_tokens']:>11}{row['ttft_s']:>9.2f}{row['decode_tok_s']:>14.1f}"
                  f"{kept:>9.0%}{kv['bytes_kept'] / 2**20:>9.1f}{row['rss_peak_mib'] - res['rss_loaded_mib']:>15.0f}")
    for res in all_results:
        if "adapters" in res:
            a = res["adapters"]
            print(f"\nadapters {a['adapters']}: load {a['load_ms']:.0f} ms, unload {a['unload_ms']:.0f} ms, "
                  f"TTFT of a 200-token prompt with the adapter {a['ttft_with_adapter_s']:.2f} s (median)")


async def main_async(args: argparse.Namespace) -> None:
    baseline = None if args.no_baseline else transformers_baseline(args)
    results = []
    for policy in args.policies:
        res = await run_config(args, None if policy == "none" else policy)
        results.append(res)
        print(json.dumps(res), flush=True)
    print_tables(results, args, baseline)
    if args.out:
        Path(args.out).write_text(json.dumps({"baseline": baseline, "server": results}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096], help="prompt tokens (about)")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--policies", nargs="+", default=["none", "snapkv", "defensivekv", "layer_defensivekv"])
    ap.add_argument("--budget", type=float, default=0.2, help="fraction of the KV cache kept")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--adapters", default="", help="folder of adapters made by `cachesvc make-adapters`")
    ap.add_argument("--no-baseline", action="store_true", help="skip transformers' generate() baseline")
    ap.add_argument("--out", default="")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
