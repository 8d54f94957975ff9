"""The model on one worker thread: it loads the model, then runs queued jobs (generations and adapter
operations) one at a time, so the event loop never blocks and adapters never change under a running generation.

Events cross to the event loop through an ``asyncio.Queue`` per job; a job whose client went away is cancelled
between two tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from cachesvc.config import ModelServerConfig
from cachesvc.model_server.generation import Finished, generate
from cachesvc.model_server.protocol import CompletionRequest
from cachesvc.openai.errors import RequestError

log = logging.getLogger("cachesvc.model_server")
T = TypeVar("T")
_STOP = object()


def build_policy(name: str | None, budget: float, window: int, options: Mapping[str, Any] | None = None) -> Any:
    """A KV policy from its registered name, a budget (fraction kept if <= 1, else entries per KV head) and the
    policy's own fields (``options``)."""
    if name in (None, "none"):
        return None
    from cachesvc.policies.kv import make_policy

    fields = dict(options or {})
    if budget <= 1:
        return make_policy(name, compression_ratio=1.0 - budget, window_size=window, **fields)
    return make_policy(name, budget_tokens=int(budget), window_size=window, **fields)


def check_policy_options(config: ModelServerConfig, key: str = "model_server") -> None:
    """Build every policy that has options once, so that a bad field or value fails at start-up, naming its key."""
    for name, options in config.kv_policy_options.items():
        try:
            build_policy(name, config.kv_budget, config.kv_window, options)
        except ValueError as exc:
            raise ValueError(f"{key}.kv_policy_options.{name}: {exc}") from None


@dataclass
class EngineStats:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    busy_s: float = 0.0
    adapter_ops: int = 0


class Job:
    """Something to run on the worker thread; its results go to ``events`` on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.cancelled = threading.Event()

    def post(self, item: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, item)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            self.cancelled.set()

    def cancel(self) -> None:
        self.cancelled.set()

    async def next(self) -> Any:
        item = await self.events.get()
        if isinstance(item, BaseException):
            raise item
        return item


class GenerationJob(Job):
    def __init__(self, loop: asyncio.AbstractEventLoop, request: CompletionRequest) -> None:
        super().__init__(loop)
        self.request = request


class CallJob(Job):
    def __init__(self, loop: asyncio.AbstractEventLoop, fn: Callable[[Any], Any]) -> None:
        super().__init__(loop)
        self.fn = fn


class ModelEngine:
    """Owns the model, the tokenizer and the adapter registry; see the module docstring."""

    def __init__(self, config: ModelServerConfig, *, loaded: tuple[Any, Any] | None = None) -> None:
        from cachesvc.model_server.hf_model import model_display_name

        check_policy_options(config)
        self.config = config
        self.model_name = config.served_model_name or model_display_name(config.model)
        self.stats = EngineStats()
        self.ready = threading.Event()
        self.load_error: str | None = None
        self.load_seconds: float | None = None
        self.model: Any = None
        self.tokenizer: Any = None
        self.registry: Any = None
        self.max_model_len = config.max_model_len or 0
        self._loaded = loaded
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._eos: frozenset[int] = frozenset()

    def policy(self, name: str | None, budget: float) -> Any:
        """The KV policy ``name`` at ``budget``, with its configured options; ``None`` keeps the whole cache."""
        return build_policy(name, budget, self.config.kv_window, self.config.kv_policy_options.get(name or ""))

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread (it loads the model first; requests queue behind the load)."""
        self._thread = threading.Thread(target=self._run, name="model-engine", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        if self._thread is None:
            return
        self._jobs.put(_STOP)
        await asyncio.to_thread(self._thread.join, 30.0)
        self._thread = None

    @property
    def status(self) -> str:
        if self.load_error:
            return "failed"
        return "ready" if self.ready.is_set() else "loading"

    @property
    def pending(self) -> int:
        """Jobs waiting or running."""
        return self._pending

    def adapter_names(self) -> list[str]:
        return list(self.registry.names()) if self.registry is not None else []

    # -- submitting ---------------------------------------------------------------------------------------------
    def submit(self, request: CompletionRequest) -> GenerationJob:
        """Queue a generation; 503 when the queue is full or the model failed to load."""
        self._admit()
        job = GenerationJob(asyncio.get_running_loop(), request)
        self._enqueue(job)
        return job

    async def call(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(engine)`` on the worker thread between generations (adapter loads and unloads)."""
        self._admit()
        job = CallJob(asyncio.get_running_loop(), fn)
        self._enqueue(job)
        return await job.next()

    def _admit(self) -> None:
        if self.load_error:
            raise RequestError(503, f"The model failed to load: {self.load_error}", code="model_load_failed")
        if self._pending >= self.config.max_queue:
            raise RequestError(503, f"The server is overloaded ({self._pending} requests queued); retry later.",
                               code="server_overloaded")

    def _enqueue(self, job: Job) -> None:
        self._pending += 1
        self._jobs.put(job)

    # -- the worker thread --------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._load()
        except Exception as exc:  # reported on /healthz and to every request
            self.load_error = f"{exc.__class__.__name__}: {exc}"
            log.exception("the model server failed to load %s", self.config.model)
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            try:
                if self.load_error:
                    job.post(RequestError(503, f"The model failed to load: {self.load_error}",
                                          code="model_load_failed"))
                elif isinstance(job, CallJob):
                    self._run_call(job)
                elif job.cancelled.is_set():
                    job.post(RequestError(499, "The client closed the request.", code="client_closed_request"))
                else:
                    self._run_generation(job)
            finally:
                with contextlib.suppress(RuntimeError):  # the event loop is already closed (shutdown)
                    job.loop.call_soon_threadsafe(self._done)

    def _done(self) -> None:
        self._pending -= 1

    def _load(self) -> None:
        import torch

        from cachesvc.model_server.adapters import AdapterRegistry

        started = time.perf_counter()
        torch.set_num_threads(self.config.effective_threads)
        if self._loaded is not None:
            self.model, self.tokenizer = self._loaded
        else:
            from transformers.utils import logging as hf_logging

            from cachesvc.model_server.hf_model import load_causal_lm

            hf_logging.disable_progress_bar()
            self.model, self.tokenizer = load_causal_lm(self.config.model)
        self.max_model_len = self.config.max_model_len or int(self.model.config.max_position_embeddings)
        self._eos = _eos_ids(self.model, self.tokenizer)
        self.registry = AdapterRegistry(self.model, max_loaded=self.config.max_loras, root=self.config.lora_dir)
        for item in self.config.loras:
            name, _, path = item.partition("=")
            self.registry.load(name.strip(), path.strip())
        self.load_seconds = time.perf_counter() - started
        self.ready.set()
        log.info("model %s ready in %.1f s (%d adapters)", self.model_name, self.load_seconds,
                 len(self.registry.names()))

    def _run_call(self, job: CallJob) -> None:
        try:
            result = job.fn(self)
            self.stats.adapter_ops += 1
        except Exception as exc:  # noqa: BLE001  (handed to the caller)
            result = exc
        job.post(result)

    def _run_generation(self, job: GenerationJob) -> None:
        request = job.request
        started = time.perf_counter()
        try:
            adapter = None if request.model == self.model_name else request.model
            if adapter is not None and adapter not in self.registry:
                raise model_not_found(request.model)
            prompt_ids = request.prompt_ids(self.tokenizer)
            params = request.with_max_tokens(len(prompt_ids), self.max_model_len, self.config.default_max_tokens)
            name = request.kv_policy if request.kv_policy is not None else self.config.kv_policy
            budget = request.kv_budget if request.kv_budget is not None else self.config.kv_budget
            policy = self.policy(name, budget)
            with self.registry.active(adapter) as model:
                for event in generate(model, self.tokenizer, prompt_ids, params, policy=policy, policy_name=name,
                                      budget=budget, eos_token_ids=self._eos, cancelled=job.cancelled.is_set):
                    if isinstance(event, Finished):
                        self._count(event)  # before the client can see it finish
                    job.post(event)
        except RequestError as exc:
            job.post(exc)
        except Exception as exc:  # one bad request must not stop the worker
            log.exception("generation failed")
            job.post(RequestError(500, f"Generation failed: {exc.__class__.__name__}: {exc}", code="internal_error"))
        finally:
            self.stats.busy_s += time.perf_counter() - started

    def _count(self, event: Finished) -> None:
        self.stats.requests += 1
        self.stats.prompt_tokens += event.prompt_tokens
        self.stats.completion_tokens += event.completion_tokens


def model_not_found(name: str) -> RequestError:
    return RequestError(404, f"The model `{name}` does not exist.", param="model", code="model_not_found")


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif isinstance(configured, (list, tuple)):
        ids.update(int(i) for i in configured)
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)

