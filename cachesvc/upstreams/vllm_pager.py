"""vLLM's runtime LoRA API as an AdapterPager; the reference model server (kind ``cachesvc``) speaks the same API.

vLLM serves it when started with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``, under ``/v1`` of the server root:

- ``POST /v1/load_lora_adapter {"lora_name", "lora_path"}``: 200 with a plain-text body on success; 400 for missing
  fields or a name already loaded; 404 when the engine finds no adapter at the path; a load that failed otherwise is
  a 400 (``BadRequestError``, releases up to 2025) or a 500 (``InternalServerError``, since).
- ``POST /v1/unload_lora_adapter {"lora_name"}``: 200 with a plain-text body; 404 for a name it does not hold.
- ``GET /v1/models``: the base model's card and one card per adapter, whose ``parent`` is the base model.
- A request picks an adapter with its name in ``"model"``; one naming an adapter the server does not hold (it
  restarted) is a 404 ``The model `{name}` does not exist.`` (``NotFoundError``): ``lost_adapter``.

The error classes rest on vLLM's own messages (``vllm/entrypoints/openai/models/serving.py``, formerly
``serving_models.py``; ``vllm/exceptions.py``), which the reference model server copies
(``cachesvc/model_server/adapters.py``):

- ``The lora adapter '{name}' has already been loaded.`` (400; recent releases add a hint about ``load_inplace``):
  ``duplicate``;
- ``Loading lora {name} failed: No adapter found for {path}`` (404): ``not_found``;
- ``The lora adapter '{name}' cannot be found.`` (404, on unload): ``unknown_adapter``;
- anything else that is not a success (a failed load, ``Both 'lora_name' and 'lora_path' must be provided.``, the
  model server's ``max_loras`` refusal, 401 ``Unauthorized``, FastAPI's 404 ``{"detail": "Not Found"}`` when runtime
  updating is off): ``refused``, with the status and the message.

vLLM's unload only drops the name from its registry: the weights stay in its GPU slot / CPU cache until LRU evicts
them (vllm issues #54839, #42633), which a caller that pages often should keep in mind (``--max-cpu-loras``).
"""

from __future__ import annotations

from cachesvc.upstreams.adapter_pager import HttpPager, PagerErrorKind, Reply, error_text, register_pager

DUPLICATE = "has already been loaded"
NO_ADAPTER = "No adapter found"
UNKNOWN = "cannot be found"
NO_MODEL = "does not exist"


@register_pager
class VllmPager(HttpPager):
    kinds = ("vllm", "cachesvc")

    async def load(self, name: str, path: str) -> float:
        reply = await self._call("POST", "v1/load_lora_adapter", body={"lora_name": name, "lora_path": path},
                                 timeout_s=self.load_timeout_s, operation="load", adapter=name)
        if reply.ok:
            return reply.seconds
        raise self.refusal(_load_failure(reply), reply, operation="load", adapter=name)

    async def unload(self, name: str) -> None:
        reply = await self._call("POST", "v1/unload_lora_adapter", body={"lora_name": name}, operation="unload",
                                 adapter=name)
        if reply.ok:
            return
        unknown = reply.status == 404 and UNKNOWN in error_text(reply)
        raise self.refusal("unknown_adapter" if unknown else "refused", reply, operation="unload", adapter=name)

    async def loaded(self) -> set[str]:
        reply = await self._call("GET", "v1/models", operation="list", limit=self.max_listing_bytes)
        return self.listed_adapters(reply)

    def model_field(self, base_model: str, adapter: str) -> str:
        return adapter

    def lost_adapter(self, status: int, message: str) -> bool:
        return status == 404 and NO_MODEL in message


def _load_failure(reply: Reply) -> PagerErrorKind:
    message = error_text(reply)
    if NO_ADAPTER in message:
        return "not_found"
    if reply.status == 400 and DUPLICATE in message:
        return "duplicate"
    return "refused"
