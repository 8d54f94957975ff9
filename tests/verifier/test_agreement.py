"""Online agreement: the window per category, the metric, and auto-tightening of the learned bar."""

from __future__ import annotations

import dataclasses
import random

import numpy as np

from cachesvc.config import AgreementConfig, CacheConfig
from cachesvc.metrics import Metrics
from cachesvc.verifier.agreement import AgreementMonitor
from cachesvc.verifier.runtime import VerifierRuntime


async def no_embed(text: str) -> np.ndarray:
    raise AssertionError("not used")


def monitor(auto_tighten: bool, **agreement: object) -> tuple[AgreementMonitor, VerifierRuntime, Metrics]:
    config = CacheConfig(auto_tighten=auto_tighten, agreement=AgreementConfig(**agreement))  # type: ignore[arg-type]
    verifier = VerifierRuntime(config, lambda: (lambda words: np.ones((len(words), 4), dtype=np.float32) / 2))
    verifier.load()
    metrics = Metrics()
    return AgreementMonitor(config, metrics, verifier, no_embed, rng=random.Random(0)), verifier, metrics


def gauge(metrics: Metrics, category: str) -> float | None:
    return metrics.registry.get_sample_value("cachesvc_hit_agreement", {"category": category})


def test_agreement_is_measured_per_category_over_a_window() -> None:
    agreement, verifier, metrics = monitor(False, window=10)
    for i in range(30):
        agreement.record("code", i % 5 != 0)  # 80% agree
    agreement.record("knowledge", True)
    assert gauge(metrics, "code") == 0.8
    assert gauge(metrics, "knowledge") == 1.0
    stats = agreement.stats()["categories"]
    assert stats["code"]["checks"] == 10 and stats["code"]["agreement"] == 0.8
    assert verifier.learned is not None and verifier.learned.raised() == {}  # auto_tighten off: bars untouched


def test_auto_tighten_raises_the_bar_until_agreement_recovers() -> None:
    agreement, verifier, _ = monitor(True, window=20, min_checks=10, tighten_step=0.01)
    assert verifier.learned is not None
    before = verifier.bar("code")
    for _ in range(9):
        agreement.record("code", False)
    assert verifier.bar("code") == before  # fewer than min_checks: no action on noise
    agreement.record("code", False)
    assert verifier.bar("code") > before
    raised = verifier.bar("code")
    for _ in range(20):
        agreement.record("code", True)  # recovered: the bar holds, it is not raised further
    assert verifier.bar("code") == raised
    assert verifier.bar("knowledge") == verifier.learned.bar("knowledge")  # other categories untouched


def test_sampling_rate_is_honoured() -> None:
    agreement, _, _ = monitor(False, sample_rate=0.1)
    sampled = sum(agreement.sampled() for _ in range(10_000))
    assert 800 < sampled < 1200
    never, _, _ = monitor(False, sample_rate=0.0)
    assert not any(never.sampled() for _ in range(1000))


def test_config_rejects_bad_agreement_settings() -> None:
    import pytest

    for bad in ({"sample_rate": 1.5}, {"window": 0}, {"tighten_step": 0.0}):
        with pytest.raises(ValueError, match="agreement"):
            CacheConfig(agreement=dataclasses.replace(AgreementConfig(), **bad)).validate("cache")  # type: ignore
