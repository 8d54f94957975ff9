"""Per-policy options of the model server (`model_server.kv_policy_options`): applied, and checked at start-up."""

from __future__ import annotations

import pytest

from cachesvc.config import ModelServerConfig, load_config
from cachesvc.model_server.app import create_model_server_app
from cachesvc.model_server.engine import ModelEngine


def test_options_apply_to_their_policy_whoever_chooses_it() -> None:
    config = ModelServerConfig(kv_policy="defensivekv", kv_budget=0.25, kv_window=16,
                               kv_policy_options={"layer_defensivekv": {"layer_group": 5, "prefill_pool": 1.0},
                                                  "defensivekv": {"critical_mass": 0.5}})
    engine = ModelEngine(config)  # not started: no model is loaded
    layered = engine.policy("layer_defensivekv", 0.1)
    assert (layered.layer_group, layered.prefill_pool, layered.window_size) == (5, 1.0, 16)
    assert layered.compression_ratio == pytest.approx(0.9)
    assert engine.policy("defensivekv", 64).critical_mass == 0.5
    assert engine.policy("defensivekv", 64).budget_tokens == 64
    snap = engine.policy("snapkv", 0.25)
    assert not hasattr(snap, "critical_mass") and snap.window_size == 16
    assert engine.policy(None, 0.25) is None and engine.policy("none", 0.25) is None


@pytest.mark.parametrize(("options", "message"), [
    ({"layer_defensivekv": {"layer_groups": 2}}, "model_server.kv_policy_options.layer_defensivekv: "
                                                 "layer_defensivekv has no field 'layer_groups'; known: "),
    ({"layer_defensivekv": {"layer_group": 1.5}}, "model_server.kv_policy_options.layer_defensivekv: layer_group"),
    ({"defensivekv": {"pool_kernel": 4}}, "model_server.kv_policy_options.defensivekv: pool_kernel"),
])
def test_a_bad_option_fails_at_start_naming_its_key(options: dict, message: str) -> None:
    config = load_config(None, {"model_server.kv_policy_options": options}, environ={})
    with pytest.raises(ValueError) as info:
        create_model_server_app(config.model_server)
    assert message in str(info.value)
