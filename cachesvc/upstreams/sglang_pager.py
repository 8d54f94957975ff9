"""SGLang's runtime LoRA API as an AdapterPager.

SGLang serves it when started with ``--enable-lora`` (plus ``--max-lora-rank`` and ``--lora-target-modules`` when no
adapter is given at start), at the server root, without ``/v1``:

- ``POST /load_lora_adapter {"lora_name", "lora_path", "pinned"}`` and ``POST /unload_lora_adapter {"lora_name"}``
  both answer ``{"success": bool, "error_message": str, "loaded_adapters": {name: path} | null}``, with 200 when
  ``success`` and 400 when not (``python/sglang/srt/entrypoints/http_server.py``). Adapters are loaded unpinned:
  pinning is the cache controller's decision, not the pager's.
- A request picks an adapter with ``"model": "<base model>:<adapter>"``; one naming an adapter the server does not
  hold (it restarted) is a 400 ``The following requested LoRA adapters are not loaded: ...``
  (``tokenizer_manager.py``): ``lost_adapter``.

Listing: SGLang's ``GET /v1/models`` lists, next to the served model, one card per registered adapter whose
``parent`` is the served model (``available_models`` in ``http_server.py``, when LoRA is enabled), so ``loaded()``
reads it like vLLM's. The ``loaded_adapters`` of every load and unload answer is kept as well, in
``last_reported`` (the names the server reported at that call), but ``loaded()`` does not rely on it: it is only
seen on calls, and a restarted server would leave it stale. Releases too old to list adapters in ``/v1/models`` make
``loaded()`` an empty set.

The error classes rest on SGLang's own messages (``python/sglang/srt/lora/lora_manager.py``, ``lora_registry.py``,
``lora_config.py``; ``managers/tokenizer_manager.py``), matched as text in ``error_message``:

- ``Failed to load LoRA adapter {name} because it is already loaded`` (the backend's check) or ``LoRA with name {name}
  already exists. ...`` (the registry's): ``duplicate``;
- a path that holds no adapter: ``LoRAConfig`` hands a path that is not a directory to Hugging Face's
  ``snapshot_download``, whose error lands in ``error_message`` (``Repo id must be in the form 'repo_name' or
  'namespace/repo_name': '/no/such/dir'. ...``, ``Repository Not Found ...``, the offline ``... snapshot folder ...``),
  and a directory without ``adapter_config.json`` gives ``[Errno 2] No such file or directory: ...``: ``not_found``;
- ``LoRA with name {name} does not exist. Loaded LoRAs: ...`` (unload): ``unknown_adapter``;
- anything else (an incompatible rank or target modules, ``Cannot load LoRA adapter ... Maximum number of loaded LoRA
  adapters is ...``, ``LoRA is not enabled. ...``, FastAPI's 422 for a malformed body, 401 ``Unauthorized``):
  ``refused``.
"""

from __future__ import annotations

from cachesvc.upstreams.adapter_pager import HttpPager, PagerErrorKind, Reply, register_pager

DUPLICATE_MARKERS = ("because it is already loaded", "already exists")
NOT_FOUND_MARKERS = ("repo id must", "repository not found", "snapshot folder", "no such file or directory",
                     "does not appear to have a file named")
UNKNOWN_MARKERS = ("does not exist",)
LOST_MARKER = "adapters are not loaded"


@register_pager
class SglangPager(HttpPager):
    kinds = ("sglang",)
    last_reported: set[str] | None = None  # loaded_adapters of the last answer that had one

    async def load(self, name: str, path: str) -> float:
        reply = await self._call("POST", "load_lora_adapter",
                                 body={"lora_name": name, "lora_path": path, "pinned": False},
                                 timeout_s=self.load_timeout_s, operation="load", adapter=name)
        message = self._outcome(reply, "load", name)
        if message is None:
            return reply.seconds
        lowered = message.lower()
        kind: PagerErrorKind = "refused"
        if any(marker in lowered for marker in DUPLICATE_MARKERS):
            kind = "duplicate"
        elif any(marker in lowered for marker in NOT_FOUND_MARKERS):
            kind = "not_found"
        raise self.error(kind, message, operation="load", adapter=name, status=reply.status)

    async def unload(self, name: str) -> None:
        reply = await self._call("POST", "unload_lora_adapter", body={"lora_name": name}, operation="unload",
                                 adapter=name)
        message = self._outcome(reply, "unload", name)
        if message is None:
            return
        unknown = any(marker in message.lower() for marker in UNKNOWN_MARKERS)
        raise self.error("unknown_adapter" if unknown else "refused", message, operation="unload", adapter=name,
                         status=reply.status)

    async def loaded(self) -> set[str]:
        reply = await self._call("GET", "v1/models", operation="list", limit=self.max_listing_bytes)
        return self.listed_adapters(reply)

    def model_field(self, base_model: str, adapter: str) -> str:
        return f"{base_model}:{adapter}"

    def lost_adapter(self, status: int, message: str) -> bool:
        return status == 400 and LOST_MARKER in message.lower()

    def _outcome(self, reply: Reply, operation: str, name: str) -> str | None:
        """None for a success, else the server's message; an answer that is not SGLang's update result is
        ``refused`` (an error status: a missing route, a malformed request, a bad key) or ``bad_response`` (a 2xx)."""
        body = reply.json()
        if not (isinstance(body, dict) and isinstance(body.get("success"), bool)):
            if reply.ok:
                raise self.error("bad_response", "a success status without SGLang's update result", status=reply.status,
                                 operation=operation, adapter=name)
            raise self.refusal("refused", reply, operation=operation, adapter=name)
        adapters = body.get("loaded_adapters")
        if isinstance(adapters, dict):
            self.last_reported = {str(key) for key in adapters}
        if body["success"] and reply.ok:
            return None
        message = body.get("error_message")
        return message if isinstance(message, str) and message else f"HTTP {reply.status}: success is false"

