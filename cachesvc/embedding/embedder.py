"""Sentence embeddings off the event loop, micro-batched: concurrent queries share one forward pass."""

from __future__ import annotations

import asyncio
import queue
import threading
import time

import numpy as np

from cachesvc.config import EmbeddingConfig
from cachesvc.embedding.encoders import Encode, load_encoder

_Job = tuple[str, asyncio.AbstractEventLoop, "asyncio.Future[np.ndarray]"]


class Embedder:
    """One worker thread owns the model; `embed` queues a text and awaits its normalized float32 vector."""

    def __init__(self, config: EmbeddingConfig, encode: Encode | None = None) -> None:
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

    @property
    def started(self) -> bool:
        """Whether ``embed`` may be called (the model is loaded and its worker runs)."""
        return self._thread is not None

    def stats(self) -> dict[str, object]:
        """What admin shows: the backend, and forward passes and texts so far (their ratio is the batch size)."""
        return {"backend": self.backend, "batches": self.batches, "texts": self.texts}

    async def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join, 10)
            self._thread = None

    def encoder(self) -> Encode:
        """The model's encode function (thread-safe; for tools that embed other things, such as single words)."""
        if self._encode is None:
            raise RuntimeError("Embedder.encoder called before start()")
        return self._encode

    def encode_now(self, texts: list[str]) -> np.ndarray:
        """Embed in the calling thread (start-up, tools); never call it on the event loop."""
        if self._encode is None:
            raise RuntimeError("Embedder.encode_now called before start()")
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
                    if max_wait:
                        job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                    else:
                        job = self._queue.get_nowait()
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
                loop.call_soon_threadsafe(_resolve, future, vector)
        except Exception as exc:  # noqa: BLE001  (the model failed: every waiter learns why)
            for _, loop, future in batch:
                loop.call_soon_threadsafe(_fail, future, exc)


def _resolve(future: asyncio.Future[np.ndarray], value: np.ndarray) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[np.ndarray], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
