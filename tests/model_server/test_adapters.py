"""AdapterRegistry on the real SmolLM2 with real trained adapters: outputs, memory, and vLLM-style errors."""

from __future__ import annotations

import copy
import gc
import json
import shutil
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file, save_file
from torch import nn

from cachesvc.model_server.adapters import AdapterRegistry
from cachesvc.openai.errors import RequestError

PROMPT = torch.tensor([[1, 504, 3458, 314, 260, 1789, 282, 2512, 28, 1029, 314, 3128]])


@pytest.fixture(scope="module")
def model(smollm2: tuple[nn.Module, object]) -> nn.Module:
    """A private copy of the session model: these tests inject adapters into it."""
    return copy.deepcopy(smollm2[0])


@pytest.fixture(scope="module")
def base_logits(model: nn.Module) -> torch.Tensor:
    """Logits of the model before any adapter was ever loaded into it."""
    return logits(model)


@pytest.fixture
def registry(model: nn.Module) -> Iterator[AdapterRegistry]:
    registry = AdapterRegistry(model)
    yield registry
    for name in registry.names():
        registry.unload(name)
    assert not lora_layers(model), "a test left LoRA layers behind"


@torch.no_grad()
def logits(model: nn.Module) -> torch.Tensor:
    return model(input_ids=PROMPT).logits


def lora_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def active_logits(registry: AdapterRegistry, name: str | None) -> torch.Tensor:
    with registry.active(name) as active:
        return logits(active)


def file_bytes(adapter: Path) -> int:
    return sum(t.numel() * t.element_size() for t in load_file(str(adapter / "adapter_model.safetensors")).values())


def snapshot(model: nn.Module) -> tuple[list[tuple[str, type]], dict[str, tuple[int, bool]], bool]:
    """Module tree, parameter storage and flags, and peft bookkeeping: what a refused load must not change."""
    modules = [(name, type(m)) for name, m in model.named_modules()]
    params = {name: (p.data_ptr(), p.requires_grad) for name, p in model.named_parameters()}
    return modules, params, hasattr(model, "peft_config")


def test_load_use_unload_restores_the_plain_model(
    registry: AdapterRegistry, model: nn.Module, base_logits: torch.Tensor, trained_adapters: dict[str, Path]
) -> None:
    plain = snapshot(model)
    info = registry.load("code", str(trained_adapters["code"]))
    assert (info.name, info.rank) == ("code", 8)
    assert info.target_modules == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert info.path == str(trained_adapters["code"].resolve())
    assert info.bytes == file_bytes(trained_adapters["code"]) == registry.loaded_bytes() == 4 * info.parameters
    assert 0 < info.load_seconds < 5
    assert registry.names() == ["code"] and "code" in registry and "legal" not in registry
    assert registry.model is model and type(model).__name__ == "LlamaForCausalLM"

    with_adapter = active_logits(registry, "code")
    assert (with_adapter - base_logits).abs().max() > 1e-2
    assert torch.equal(active_logits(registry, None), base_logits)
    assert torch.equal(logits(model), base_logits), "outside active() the base model answers"

    layer = model.get_submodule("model.layers.29.self_attn.q_proj")
    held = weakref.ref(next(iter(layer.lora_A.values())).weight)
    layer = None
    registry.unload("code")
    gc.collect()
    assert held() is None, "the adapter's weights are still referenced after unload"
    assert registry.names() == [] and registry.loaded_bytes() == 0
    assert type(model.get_submodule("model.layers.29.self_attn.q_proj")) is nn.Linear
    assert snapshot(model) == plain
    assert torch.equal(logits(model), base_logits)


def test_adapters_side_by_side_are_order_independent(
    registry: AdapterRegistry, base_logits: torch.Tensor, trained_adapters: dict[str, Path]
) -> None:
    registry.load("code", str(trained_adapters["code"]))
    code_alone = active_logits(registry, "code")
    registry.unload("code")

    legal = registry.load("legal", str(trained_adapters["legal"]))
    registry.load("code", str(trained_adapters["code"]))
    assert (legal.rank, legal.target_modules) == (4, ["q_proj", "v_proj"])
    assert registry.names() == ["legal", "code"]
    assert registry.loaded_bytes() == file_bytes(trained_adapters["code"]) + file_bytes(trained_adapters["legal"])
    assert torch.equal(active_logits(registry, "code"), code_alone)
    legal_logits = active_logits(registry, "legal")
    assert not torch.equal(legal_logits, code_alone) and not torch.equal(legal_logits, base_logits)
    assert torch.equal(active_logits(registry, None), base_logits)

    registry.unload("legal")
    assert torch.equal(active_logits(registry, "code"), code_alone)


def test_switching_moves_no_weights(registry: AdapterRegistry, model: nn.Module,
                                    trained_adapters: dict[str, Path]) -> None:
    registry.load("code", str(trained_adapters["code"]))
    registry.load("legal", str(trained_adapters["legal"]))
    before = {name: p.data_ptr() for name, p in model.named_parameters()}
    started = time.perf_counter()
    for name in ["code", "legal", None] * 5:
        with registry.active(name):
            pass
    per_switch = (time.perf_counter() - started) / 15
    assert {name: p.data_ptr() for name, p in model.named_parameters()} == before
    assert per_switch < 0.1, f"switching took {per_switch * 1000:.1f} ms"


def _error(call: Callable[[], object]) -> RequestError:
    with pytest.raises(RequestError) as caught:
        call()
    return caught.value


def test_request_errors_match_vllm(registry: AdapterRegistry, tmp_path: Path,
                                   trained_adapters: dict[str, Path]) -> None:
    code = str(trained_adapters["code"])
    both = "Both 'lora_name' and 'lora_path' must be provided."
    no_name = _error(lambda: registry.load("", code))
    assert (no_name.status, no_name.message) == (400, both)
    assert _error(lambda: registry.load("x", "")).message == both
    assert _error(lambda: registry.load("two words", code)).status == 400
    assert _error(lambda: registry.load("bell\x07", code)).status == 400

    missing = _error(lambda: registry.load("ghost", str(tmp_path / "nowhere")))
    assert missing.status == 404
    assert missing.message == f"Loading lora ghost failed: No adapter found for {tmp_path / 'nowhere'}"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "adapter_config.json").write_text((trained_adapters["code"] / "adapter_config.json").read_text())
    no_tensors = _error(lambda: registry.load("empty", str(empty)))
    assert no_tensors.status == 400 and "doesn't contain tensors" in no_tensors.message

    registry.load("code", code)
    again = _error(lambda: registry.load("code", code))
    assert (again.status, again.message) == (400, "The lora adapter 'code' has already been loaded.")
    unknown = _error(lambda: registry.unload("nope"))
    assert (unknown.status, unknown.message) == (404, "The lora adapter 'nope' cannot be found.")
    assert _error(lambda: registry.unload("")).status == 400
    assert _error(lambda: registry.active("nope").__enter__()).status == 404
    assert registry.names() == ["code"]


def test_max_loaded_refuses_instead_of_evicting(model: nn.Module, trained_adapters: dict[str, Path]) -> None:
    registry = AdapterRegistry(model, max_loaded=1)
    registry.load("code", str(trained_adapters["code"]))
    full = _error(lambda: registry.load("legal", str(trained_adapters["legal"])))
    assert (full.status, full.code) == (400, "max_loras_reached") and "Unload one first" in full.message
    assert registry.names() == ["code"]
    registry.unload("code")
    registry.load("legal", str(trained_adapters["legal"]))
    registry.unload("legal")
    assert not lora_layers(model)


def test_root_confines_paths(model: nn.Module, tmp_path: Path, trained_adapters: dict[str, Path]) -> None:
    root = tmp_path / "loras"
    root.mkdir()
    shutil.copytree(trained_adapters["code"], root / "code")
    (root / "escape").symlink_to(trained_adapters["legal"], target_is_directory=True)
    registry = AdapterRegistry(model, root=root)

    assert registry.load("code", "code").path == str((root / "code").resolve())
    registry.unload("code")
    for outside in ["../x", str(trained_adapters["legal"]), "escape"]:
        refused = _error(lambda outside=outside: registry.load("out", outside))
        assert refused.status == 400 and "outside" in refused.message, outside
    assert _error(lambda: registry.load("none", "missing")).status == 404
    assert not lora_layers(model)


def _broken_copy(src: Path, dst: Path, *, config: dict | None = None,
                 tensors: Callable[[dict[str, torch.Tensor]], None] | None = None) -> Path:
    shutil.copytree(src, dst)
    if config:
        raw = json.loads((dst / "adapter_config.json").read_text())
        raw.update(config)
        (dst / "adapter_config.json").write_text(json.dumps(raw))
    if tensors:
        state = load_file(str(dst / "adapter_model.safetensors"))
        tensors(state)
        save_file(state, str(dst / "adapter_model.safetensors"))
    return dst


def _first_key(state: dict[str, torch.Tensor], kind: str) -> str:
    return sorted(k for k in state if f".{kind}." in k)[0]


BROKEN = {
    "unknown target module": ({"target_modules": ["q_proj", "qkv_fused"]}, None, "expected target modules"),
    "non-LoRA peft type": ({"peft_type": "IA3"}, None, "only LORA"),
    "DoRA": ({"use_dora": True}, None, "unsupported"),
    "wrong shape": (None, lambda s: s.update({(k := _first_key(s, "lora_B")): s[k][:100]}), "do not fit"),
    "missing tensor": (None, lambda s: s.pop(_first_key(s, "lora_A")), "no lora_A/lora_B"),
    "stray tensor": (None, lambda s: s.update({"base_model.model.lm_head.lora_A.weight": torch.zeros(8, 576)}),
                     "unexpected tensor"),
    # Passes the file checks; peft then builds rank-4 q_proj layers the rank-8 tensors do not fit: rolled back.
    "rank pattern": ({"rank_pattern": {"q_proj": 4}}, None, "config makes a (4, 576) weight"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_incompatible_adapter_leaves_the_model_untouched(
    case: str, registry: AdapterRegistry, model: nn.Module, base_logits: torch.Tensor, tmp_path: Path,
    trained_adapters: dict[str, Path]
) -> None:
    registry.load("legal", str(trained_adapters["legal"]))
    legal_before = active_logits(registry, "legal")
    before = snapshot(model)
    config, tensors, message = BROKEN[case]
    broken = _broken_copy(trained_adapters["code"], tmp_path / "broken", config=config, tensors=tensors)

    refused = _error(lambda: registry.load("broken", str(broken)))
    assert refused.status == 400
    assert message in refused.message, refused.message
    assert snapshot(model) == before
    assert registry.names() == ["legal"]
    assert torch.equal(active_logits(registry, "legal"), legal_before)
    assert torch.equal(active_logits(registry, None), base_logits)


def test_rank_above_the_limit_is_refused(model: nn.Module, trained_adapters: dict[str, Path]) -> None:
    registry = AdapterRegistry(model, max_rank=4)
    refused = _error(lambda: registry.load("code", str(trained_adapters["code"])))
    assert refused.status == 400 and "LoRA rank 8 is greater than max_lora_rank 4." in refused.message
    assert registry.load("legal", str(trained_adapters["legal"])).rank == 4
    registry.unload("legal")
    assert not lora_layers(model)
