"""Command line: `cachesvc serve` runs the caching proxy."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from cachesvc import __version__


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
                            "replaces the config file's upstreams)")
    serve.add_argument("--upstream-api-key", metavar="KEY", help="API key sent to the upstream instead of the client's")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.add_argument("--store", choices=["memory", "sqlite"], help="document store (default memory)")
    serve.add_argument("--store-path", metavar="FILE", help="SQLite file for --store sqlite")
    serve.add_argument("--admin-key", metavar="KEY", help="enables /admin endpoints with this key")
    serve.add_argument("--no-cache", action="store_true", help="pass everything through (measure the proxy alone)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

    stub = commands.add_parser(
        "stub-upstream", help="run a stand-in OpenAI-compatible model server (for benchmarks and trials)",
        description="A stand-in model server that speaks the OpenAI wire format and answers from the prompt.",
    )
    stub.add_argument("--host", default="127.0.0.1")
    stub.add_argument("--port", type=int, default=8000)
    stub.add_argument("--latency-ms", type=float, default=20.0, help="time to answer each request")
    stub.add_argument("--max-concurrency", type=int, default=0, help="answer 429 past this many in flight (0: never)")
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
                      ("store_path", "cache.store.path"), ("admin_key", "server.admin_key"),
                      ("log_level", "log_level")):
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = value
    if args.no_cache:
        overrides["cache.enabled"] = False
    return overrides


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "stub-upstream":
        return _stub(args)
    return 2


def _stub(args: argparse.Namespace) -> int:
    from aiohttp import web

    from cachesvc.stub_upstream import create_stub_app

    app = create_stub_app(latency_ms=args.latency_ms, max_concurrency=args.max_concurrency)
    web.run_app(app, host=args.host, port=args.port, access_log=None,
                print=lambda msg: print(f"stub-upstream {msg}", flush=True))
    return 0


def _serve(args: argparse.Namespace) -> int:
    # Small matrix-vector products (classifier, flat index) on the request path: a second BLAS thread only
    # waits for the busy core. Must be set before numpy loads.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from aiohttp import web

    from cachesvc.app import create_app
    from cachesvc.config import load_config

    try:
        config = load_config(args.config, serve_overrides(args))
        app = create_app(config)
    except (ValueError, OSError) as exc:
        print(f"cachesvc: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    web.run_app(app, host=config.server.host, port=config.server.port, access_log=None,
                print=lambda msg: print(f"cachesvc {msg}", flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
