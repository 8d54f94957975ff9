"""The command line: flags become configuration, bad values stop start-up naming the key, and the real
`cachesvc model-server` process serves over loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from cachesvc.cli import build_parser, main, model_server_overrides
from cachesvc.config import load_config


def test_model_server_flags_become_configuration() -> None:
    args = build_parser().parse_args([
        "model-server", "--model", "smollm2", "--kv-policy", "defensivekv", "--kv-budget", "0.25", "--lora-dir",
        "/srv/loras", "--lora", "code=code", "--max-loras", "3", "--port", "9001", "--threads", "1"])
    ms = load_config(None, model_server_overrides(args), environ={}).model_server
    assert (ms.model, ms.kv_policy, ms.kv_budget, ms.lora_dir, ms.loras, ms.max_loras, ms.port, ms.threads) == (
        "smollm2", "defensivekv", 0.25, "/srv/loras", ["code=code"], 3, 9001, 1)
    options = build_parser().parse_args(["model-server", "--kv-option", "layer_defensivekv.layer_group=4",
                                         "--kv-option", "layer_defensivekv.prefill_pool=1.0",
                                         "--kv-option", "defensivekv.critical_mass=0.8"])
    assert load_config(None, model_server_overrides(options), environ={}).model_server.kv_policy_options == {
        "layer_defensivekv": {"layer_group": 4, "prefill_pool": 1.0}, "defensivekv": {"critical_mass": 0.8}}
    none = build_parser().parse_args(["model-server", "--kv-policy", "none"])
    assert load_config(None, model_server_overrides(none), environ={}).model_server.kv_policy is None


@pytest.mark.parametrize(("argv", "key"), [
    (["model-server", "--kv-budget", "2.5"], "model_server.kv_budget"),
    (["model-server", "--kv-policy", "lru"], "model_server.kv_policy"),
    (["model-server", "--lora", "nameless"], "model_server.loras[0]"),
    (["model-server", "--kv-option", "lru.size=3"], "model_server.kv_policy_options.lru"),
    (["model-server", "--kv-option", "snapkv.colour=3"], "model_server.kv_policy_options.snapkv"),
    (["model-server", "--kv-option", "snapkv.pool_kernel=4"], "model_server.kv_policy_options.snapkv"),
])
def test_bad_values_stop_start_up_naming_the_key(argv: list[str], key: str, capsys: pytest.CaptureFixture[str]
                                                 ) -> None:
    assert main(argv) == 2
    assert key in capsys.readouterr().err


def test_a_malformed_kv_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["model-server", "--kv-option", "layer_group=4"])
    assert info.value.code == 2 and "POLICY.FIELD=VALUE" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        return getattr(exc, "code", 0) or 0


def test_model_server_process_serves_over_loopback() -> None:
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRITON_INTERPRET": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "cachesvc", "model-server", "--port", str(port), "--threads", "1",
                             "--kv-policy", "snapkv"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180  # bounded: the first start converts the GGUF (~17 s on 2 cores)
        while time.monotonic() < deadline and _get(f"http://127.0.0.1:{port}/health") != 200:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.3)
        body = json.dumps({"model": "SmolLM2-135M-Instruct", "prompt": "The capital of France is",
                           "max_tokens": 3, "temperature": 0}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert "Paris" in answer["choices"][0]["text"]
        assert answer["kv_cache"]["policy"] == "snapkv"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_store_flags_become_configuration() -> None:
    from cachesvc.cli import build_parser, serve_overrides

    args = build_parser().parse_args(["serve", "--store", "redis", "--redis-url", "redis://127.0.0.1:6390/2"])
    store = load_config(None, serve_overrides(args), environ={}).cache.store
    assert (store.kind, store.url) == ("redis", "redis://127.0.0.1:6390/2")
    bad = build_parser().parse_args(["serve", "--store", "redis", "--redis-url", "http://127.0.0.1:6390"])
    with pytest.raises(ValueError, match="cache.store.url"):
        load_config(None, serve_overrides(bad), environ={})
