"""Runtime LoRA adapters for one transformers causal LM, loaded and unloaded like vLLM's ``/v1/load_lora_adapter``.

Adapters are injected in place with peft (``inject_adapter_in_model``): the model stays the plain transformers
model, its targeted ``nn.Linear`` layers become peft ``LoraLayer`` wrappers that hold every loaded adapter side by
side, and a request picks one by switching the wrappers' active adapter (no weight copies). An adapter is checked
against the model before anything is injected; unloading the last adapter puts the plain ``nn.Linear`` back.
Errors carry vLLM's status codes and messages for the same situations.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cachesvc.openai.errors import RequestError

CONFIG_FILE = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
DEFAULT_MAX_RANK = 64
_KEY = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_A|lora_B)\.weight$")
_SAVED_PREFIX = "base_model.model."  # what PeftModel.save_pretrained puts before the base model's own names
# Config fields that ask for something other than plain LoRA on nn.Linear; each must be falsy (or "none").
_UNSUPPORTED = ("use_dora", "modules_to_save", "layer_replication", "target_parameters", "lora_bias",
                "trainable_token_indices", "fan_in_fan_out", "use_qalora", "use_bdlora", "alora_invocation_tokens")


@dataclass
class AdapterInfo:
    """A loaded adapter: where it came from, its size and how long loading took."""

    name: str
    path: str
    rank: int
    target_modules: list[str]
    parameters: int
    bytes: int
    load_seconds: float


@dataclass
class _Loaded:
    info: AdapterInfo
    key: str  # the adapter's name inside peft's layers; user names may hold characters peft cannot take


class AdapterRegistry:
    """LoRA adapters injected in place into one transformers causal LM with peft. Not thread-safe: the engine
    calls every method from its single worker thread, between generations."""

    def __init__(self, model: nn.Module, *, max_loaded: int = 4, root: str | Path | None = None,
                 max_rank: int = DEFAULT_MAX_RANK) -> None:
        if max_loaded < 1:
            raise ValueError(f"max_loaded must be at least 1, got {max_loaded}")
        self.model = model
        self.max_loaded = max_loaded
        self.max_rank = max_rank
        self.root = Path(root).expanduser().resolve() if root is not None else None
        self._sites = _linear_sites(model)
        self._base_requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
        self._loaded: dict[str, _Loaded] = {}
        self._keys = itertools.count()
        self._layers: list[Any] = []

    # -- queries ---------------------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Loaded adapter names, in load order."""
        return list(self._loaded)

    def info(self, name: str) -> AdapterInfo:
        return self._get(name).info

    def __contains__(self, name: object) -> bool:
        return name in self._loaded

    def loaded_bytes(self) -> int:
        """Bytes of adapter weights held in memory."""
        return sum(entry.info.bytes for entry in self._loaded.values())

    # -- load / unload ---------------------------------------------------------------------------------------

    def load(self, name: str, path: str) -> AdapterInfo:
        """Read, check and inject the adapter at ``path`` under ``name``; on any error the model is unchanged."""
        started = time.perf_counter()
        self._check_load_request(name, path)
        directory = self._resolve(name, path)
        config = _read_config(name, directory)
        weights = _read_weights(directory)
        plan = self._plan(name, directory, config, weights)
        key = f"cachesvc_{next(self._keys)}"
        self._inject(name, key, config, plan)
        tensors = [t for pair in plan.values() for t in pair]
        info = AdapterInfo(
            name=name, path=str(directory), rank=max(a.shape[0] for a, _ in plan.values()),
            target_modules=sorted({module.rpartition(".")[2] for module in plan}),
            parameters=sum(t.numel() for t in tensors), bytes=sum(t.numel() * t.element_size() for t in tensors),
            load_seconds=time.perf_counter() - started,
        )
        self._loaded[name] = _Loaded(info, key)
        return info

    def unload(self, name: str) -> None:
        """Remove the adapter's weights from the model; with no adapter left, the layers are plain again."""
        if not name:
            raise RequestError(400, "either 'lora_name' and 'lora_int_id' needs to be provided.", param="lora_name")
        if name not in self._loaded:
            raise RequestError(404, f"The lora adapter '{name}' cannot be found.", param="lora_name")
        self._remove(self._loaded.pop(name).key)

    # -- selection -------------------------------------------------------------------------------------------

    @contextmanager
    def active(self, name: str | None) -> Iterator[nn.Module]:
        """Run ``self.model`` with adapter ``name`` (``None``: the base model, every adapter disabled)."""
        key = None if name is None else self._get(name).key
        self._select(key)
        try:
            yield self.model
        finally:
            self._select(None)

    def _select(self, key: str | None) -> None:
        """Make ``key`` the only active adapter of every layer that holds it and disable all other layers."""
        for layer in self._layers:
            if key is not None and key in layer.lora_A:
                if layer.disable_adapters or layer.active_adapters != [key]:
                    layer.enable_adapters(True)
                    layer.set_adapter(key, inference_mode=True)
            elif not layer.disable_adapters:
                layer.enable_adapters(False)

    # -- checks ----------------------------------------------------------------------------------------------

    def _get(self, name: str) -> _Loaded:
        try:
            return self._loaded[name]
        except (KeyError, TypeError):
            raise RequestError(404, f"The model `{name}` does not exist.", param="model",
                               code="model_not_found") from None

    def _check_load_request(self, name: str, path: str) -> None:
        if not name or not path or not isinstance(name, str) or not isinstance(path, str):
            raise RequestError(400, "Both 'lora_name' and 'lora_path' must be provided.",
                               param="lora_name" if not name else "lora_path")
        if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in name):
            raise RequestError(400, f"Invalid lora_name {name!r}: it must not contain whitespace or control "
                               "characters.", param="lora_name")
        if name in self._loaded:
            raise RequestError(400, f"The lora adapter '{name}' has already been loaded.", param="lora_name")
        if len(self._loaded) >= self.max_loaded:
            raise RequestError(
                400, f"Cannot load LoRA adapter '{name}': {len(self._loaded)} adapters are loaded, the maximum "
                f"(max_loras={self.max_loaded}). Unload one first with /v1/unload_lora_adapter.",
                param="lora_name", code="max_loras_reached")

    def _resolve(self, name: str, path: str) -> Path:
        raw = Path(path).expanduser()
        if self.root is None:
            directory = raw.resolve()
        else:
            directory = (self.root / raw).resolve()
            if not directory.is_relative_to(self.root):
                raise RequestError(400, f"Loading lora {name} failed: lora_path {path!r} lies outside the "
                                   "server's LoRA directory.", param="lora_path")
        if not (directory / CONFIG_FILE).is_file():
            raise RequestError(404, f"Loading lora {name} failed: No adapter found for {path}", param="lora_path")
        return directory

    def _plan(self, name: str, directory: Path, config: Any, weights: dict[str, torch.Tensor]
              ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{module: (lora_A, lora_B)}`` after checking that every tensor fits a targeted ``nn.Linear``."""
        def refuse(message: str) -> RequestError:
            return RequestError(400, f"Loading lora {name} failed: {message}", param="lora_path")

        targets = self._targets(config)
        unknown = _unknown_target_names(config, self._sites)
        if unknown or not targets:
            expected = sorted({site.rpartition(".")[2] for site in self._sites})
            raise refuse(f"While loading {directory}, expected target modules in {expected} but received "
                         f"{unknown or config.target_modules}. Please verify that the loaded LoRA module is correct")
        pairs: dict[str, dict[str, torch.Tensor]] = {}
        for key, tensor in weights.items():
            match = _KEY.match(key.removeprefix(_SAVED_PREFIX))
            if match is None or match["module"] not in targets:
                raise refuse(f"unexpected tensor {key!r}: it is not the lora_A/lora_B weight of a targeted module")
            pairs.setdefault(match["module"], {})[match["kind"]] = tensor
        missing = sorted(m for m in targets if set(pairs.get(m, {})) != {"lora_A", "lora_B"})
        if missing:
            raise refuse(f"no lora_A/lora_B weights for {len(missing)} targeted modules, e.g. {missing[0]}")
        return {module: self._check_shapes(refuse, module, pair["lora_A"], pair["lora_B"])
                for module, pair in sorted(pairs.items())}

    def _targets(self, config: Any) -> set[str]:
        from peft.tuners.tuners_utils import check_target_module_exists

        return {site for site in self._sites if check_target_module_exists(config, site)}

    def _check_shapes(self, refuse: Any, module: str, a: torch.Tensor, b: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        linear = self._sites[module]
        if a.dim() != 2 or b.dim() != 2 or a.shape[1] != linear.in_features or b.shape[0] != linear.out_features \
                or a.shape[0] != b.shape[1]:
            raise refuse(f"shapes lora_A {tuple(a.shape)} / lora_B {tuple(b.shape)} do not fit {module} "
                         f"({linear.in_features} -> {linear.out_features})")
        if a.shape[0] > self.max_rank:
            raise refuse(f"LoRA rank {a.shape[0]} is greater than max_lora_rank {self.max_rank}.")
        weight = linear.weight
        return (a.to(device=weight.device, dtype=weight.dtype).contiguous(),
                b.to(device=weight.device, dtype=weight.dtype).contiguous())

    # -- injection -------------------------------------------------------------------------------------------

    def _inject(self, name: str, key: str, config: Any, plan: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Inject empty LoRA layers for exactly the planned modules, then hand them the checked tensors."""
        from peft import inject_adapter_in_model

        config.target_modules = set(plan)  # exact names: peft targets these modules and nothing else
        config.layers_to_transform = config.layers_pattern = config.exclude_modules = None
        config.lora_dropout, config.inference_mode = 0.0, True
        config.init_lora_weights = False  # the file's weights replace them anyway
        try:
            inject_adapter_in_model(config, self.model, adapter_name=key, low_cpu_mem_usage=True)
            for module_name, (a, b) in plan.items():
                layer: Any = self.model.get_submodule(module_name)  # the LoraLayer peft injected: lora_A/B[key]
                _assign(layer.lora_A[key], a, module_name)
                _assign(layer.lora_B[key], b, module_name)
        except Exception as exc:
            self._remove(key)
            message = exc.message if isinstance(exc, RequestError) else f"{type(exc).__name__}: {exc}"
            raise RequestError(400, f"Loading lora {name} failed: {message}", param="lora_path") from exc
        finally:
            self._tidy()

    def _remove(self, key: str) -> None:
        """Delete adapter ``key`` from every LoRA layer and unwrap the layers left without any adapter."""
        from peft.tuners.lora import LoraLayer

        for module_name, module in list(self.model.named_modules()):
            if not isinstance(module, LoraLayer) or key not in module._all_available_adapter_names():
                continue
            module.set_adapter([k for k in module.active_adapters if k != key], inference_mode=True)
            module.delete_adapter(key)
            if not module._all_available_adapter_names():
                parent, _, child = module_name.rpartition(".")
                setattr(self.model.get_submodule(parent), child, module.get_base_layer())
        self._tidy()

    def _tidy(self) -> None:
        """Undo peft's side effects on the model (``peft_config``, frozen base weights) and reset the selection."""
        from peft.tuners.lora import LoraLayer

        self.model.__dict__.pop("peft_config", None)
        for param_name, param in self.model.named_parameters():
            base_name = param_name.replace(".base_layer.", ".")
            if base_name in self._base_requires_grad:
                param.requires_grad_(self._base_requires_grad[base_name])
        self._layers = [m for m in self.model.modules() if isinstance(m, LoraLayer)]
        self._select(None)


def _linear_sites(model: nn.Module) -> dict[str, nn.Linear]:
    """The ``nn.Linear`` layers an adapter may target (the output head is tied to the embeddings: left out)."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and name.rpartition(".")[2] != "lm_head"}


def _unknown_target_names(config: Any, sites: dict[str, nn.Linear]) -> list[str]:
    """Names in a list-style ``target_modules`` that match no layer of the model (a regex is matched as a whole)."""
    if isinstance(config.target_modules, str) or not config.target_modules:
        return []
    return sorted(t for t in config.target_modules
                  if not any(site == t or site.endswith("." + t) for site in sites))


def _assign(linear: nn.Linear, tensor: torch.Tensor, module_name: str) -> None:
    if tuple(linear.weight.shape) != tuple(tensor.shape):
        raise ValueError(f"{module_name}: the adapter's config makes a {tuple(linear.weight.shape)} weight, the file "
                         f"holds {tuple(tensor.shape)}")
    linear.weight = nn.Parameter(tensor, requires_grad=False)


def _read_config(name: str, directory: Path) -> Any:
    """The adapter's ``LoraConfig``; anything but plain LoRA is refused (400)."""
    from peft import LoraConfig

    def refuse(message: str) -> RequestError:
        return RequestError(400, f"Loading lora {name} failed: {message}", param="lora_path")

    try:
        raw = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise refuse(f"cannot read {CONFIG_FILE}: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("peft_type") != "LORA":
        peft_type = raw.get("peft_type") if isinstance(raw, dict) else None
        raise refuse(f"peft_type {peft_type!r} is not supported; only LORA adapters can be loaded.")
    used = [key for key in _UNSUPPORTED if raw.get(key)] + (["bias"] if raw.get("bias", "none") != "none" else [])
    if used:
        raise refuse(f"unsupported adapter options: {', '.join(used)}")
    try:
        return LoraConfig.from_pretrained(str(directory))
    except Exception as exc:
        raise refuse(f"invalid {CONFIG_FILE}: {exc}") from exc


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    for file_name in WEIGHT_FILES:
        path = directory / file_name
        if not path.is_file():
            continue
        try:
            if file_name.endswith(".safetensors"):
                from safetensors.torch import load_file

                return load_file(str(path))
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise RequestError(400, f"Loading lora from {directory} failed: cannot read {file_name}: {exc}",
                               param="lora_path") from exc
    raise RequestError(400, f"{directory} doesn't contain tensors", param="lora_path")
