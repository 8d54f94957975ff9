"""The model server's tests score KV entries with the torch references; the model itself (``smollm2``) is loaded
once per run by the root conftest."""

from __future__ import annotations

import pytest

from tests.model_server.adapter_fixtures import trained_adapters  # noqa: F401  (a fixture for these tests)


@pytest.fixture(autouse=True)
def _torch_reference_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/kernels turns the Triton interpreter on for the process; the model server here scores with the torch
    references (the kernels are tested against them in tests/kernels)."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
