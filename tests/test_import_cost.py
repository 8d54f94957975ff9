"""Start-up checks stay light: validating a configuration (KV policy names included) and building the proxy in front
of an upstream import neither torch nor transformers; only the model server and the torch encoder need them."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
from cachesvc.config import config_from_dict
from cachesvc.server.app import create_app
config = config_from_dict({"upstreams": [{"url": "http://127.0.0.1:9/v1"}],
                           "model_server": {"kv_policy": "defensivekv",
                                            "kv_policy_options": {"defensivekv": {"critical_mass": 0.8}}}})
create_app(config)
heavy = sorted(m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules)
print(",".join(heavy) or "none")
"""


def test_config_and_proxy_construction_import_no_torch() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "none"
