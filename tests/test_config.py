from __future__ import annotations

from pathlib import Path

import pytest

from cachesvc.config import config_from_dict, load_config

UP = {"upstreams": [{"url": "http://127.0.0.1:8000/v1/"}]}


def test_defaults_yaml_env_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  port: 9000\ncache:\n  categories:\n    code:\n      ttl_s: 10\n"
                    "    legal:\n      similarity_threshold: 0.95\n")
    config = load_config(path, {"upstreams": UP["upstreams"]},
                         environ={"CACHESVC__SERVER__ADMIN_KEY": "k", "CACHESVC__CACHE__STORE__KIND": "sqlite"})
    assert config.server.port == 9000 and config.server.admin_key == "k" and config.cache.store.kind == "sqlite"
    assert config.upstreams[0].url == "http://127.0.0.1:8000/v1"
    assert config.cache.categories["code"].ttl_s == 10
    assert config.cache.categories["code"].similarity_threshold > 0
    assert config.cache.categories["legal"].similarity_threshold == 0.95
    assert config.cache.categories["legal"].name == "legal"


def test_kv_policy_options_from_yaml_and_env(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model_server:\n  kv_policy_options:\n    layer_defensivekv:\n      layer_group: 4\n")
    environ = {"CACHESVC__MODEL_SERVER__KV_POLICY_OPTIONS__DEFENSIVEKV__CRITICAL_MASS": "0.8"}
    config = load_config(path, {}, environ=environ)
    assert config.model_server.kv_policy_options == {"layer_defensivekv": {"layer_group": 4},
                                                     "defensivekv": {"critical_mass": 0.8}}
    assert isinstance(config.model_server.kv_policy_options["layer_defensivekv"]["layer_group"], int)


def test_no_upstream_means_the_embedded_model_server() -> None:
    config = load_config(None, {}, environ={})
    assert config.embedded_model_server and config.model_server.model == "smollm2"
    assert not load_config(None, UP, environ={}).embedded_model_server


@pytest.mark.parametrize(("overrides", "message"), [
    ({"upstreams": {"url": "http://a"}}, "upstreams must be a list"),
    ({"model_server.kv_policy": "lru"}, "model_server.kv_policy: unknown policy"),
    ({"model_server.kv_budget": 2.5}, "model_server.kv_budget"),
    ({"model_server.kv_policy_options": {"lru": {}}}, "model_server.kv_policy_options.lru: unknown policy"),
    ({"model_server.kv_policy_options": {"snapkv": {"window_size": 8}}},
     "model_server.kv_policy_options.snapkv.window_size: set through"),
    ({"model_server.kv_policy_options": {"snapkv": {"pool_kernel": "7"}}},
     "model_server.kv_policy_options.snapkv.pool_kernel must be a number"),
    ({"model_server.kv_policy_options": {"snapkv": 3}}, "model_server.kv_policy_options.snapkv must be a mapping"),
    ({"model_server.kv_policy_options": [1]}, "model_server.kv_policy_options must be a mapping"),
    ({"model_server.loras": ["code"]}, "model_server.loras[0] must be NAME=PATH"),
    ({"model_server.max_queue": 0}, "model_server.max_queue"),
    ({**UP, "server.port": 70000}, "server.port"),
    ({**UP, "server.port": "x"}, "server.port"),
    ({**UP, "cache.verifierr": "x"}, "cache.verifierr: unknown key"),
    ({**UP, "cache.categories": {"code": {"similarity_threshold": 1.5}}}, "cache.categories.code.similarity_threshold"),
    ({**UP, "cache.categories": {"code": {"colour": 1}}}, "cache.categories.code.colour"),
    ({**UP, "cache.enabled": "yes"}, "cache.enabled"),
    ({"upstreams": [{"url": "ftp://x"}]}, "upstreams[0].url"),
    ({"upstreams": [{"url": "http://a"}, {"url": "http://b"}]}, "names must be unique"),
    ({**UP, "cache.embedding.max_batch": 0}, "cache.embedding.max_batch"),
    ({**UP, "cache.store.kind": "redis", "cache.store.url": "http://127.0.0.1:6379"}, "cache.store.url"),
    ({**UP, "cache.store.kind": "redis", "cache.store.prefix": "{x}"}, "cache.store.prefix"),
    ({**UP, "cache.store.timeout_s": 0}, "cache.store.timeout_s"),
    ({**UP, "log_level": "loud"}, "log_level"),
])
def test_errors_name_the_bad_key(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        load_config(None, overrides, environ={})
    assert message in str(info.value)


def test_unknown_store_and_verifier_fail_at_start() -> None:
    from cachesvc.server.app import create_app

    with pytest.raises(ValueError, match="cache.store.kind"):
        create_app(load_config(None, {**UP, "cache.store.kind": "mongo"}, environ={}))
    with pytest.raises(ValueError, match="cache.verifier"):
        create_app(load_config(None, {**UP, "cache.verifier": "magic"}, environ={}))


@pytest.mark.parametrize(("raw", "message"), [
    ({"cache": {"target_precision": 1.0}}, "cache.target_precision"),
    ({"cache": {"target_precision": 0.2}}, "cache.target_precision"),
    ({"cache": {"categories": {"code": {"target_precision": 1.5}}}}, "cache.categories.code.target_precision"),
    ({"cache": {"auto_tighten": True, "verifier": "near-miss"}}, "cache.auto_tighten"),
    ({"cache": {"judge": {"url": "ftp://x", "model": "m"}}}, "cache.judge.url"),
    ({"cache": {"judge": {"url": "http://127.0.0.1:1/v1"}}}, "cache.judge.model"),
    ({"cache": {"judge": {"url": "http://127.0.0.1:1/v1", "model": "m", "mode": "later"}}}, "cache.judge.mode"),
    ({"cache": {"agreement": {"sample_rate": 2}}}, "cache.agreement.sample_rate"),
    ({"cache": {"agreement": {"bogus": 1}}}, "bogus"),
])
def test_verifier_settings_are_validated(raw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        config_from_dict(raw)


def test_verifier_settings_load() -> None:
    config = config_from_dict({"cache": {"target_precision": 0.95, "categories": {"code": {"target_precision": 0.99}},
                                         "judge": {"url": "http://127.0.0.1:8081/v1", "model": "qwen"},
                                         "agreement": {"sample_rate": 0.05}, "auto_tighten": True}})
    assert config.cache.verifier == "learned" and config.cache.target_precision == 0.95
    assert config.cache.category("code").target_precision == 0.99
    assert config.cache.category("math").target_precision is None
    assert config.cache.judge is not None and config.cache.judge.mode == "background"
    assert config.cache.agreement.sample_rate == 0.05
