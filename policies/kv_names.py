"""The registered KV policy names (cachesvc.policies.kv), importable without torch (command-line help, configuration checks)."""

POLICY_NAMES = ("random", "streaming_llm", "snapkv", "adakv", "criticalkv", "defensivekv", "layer_defensivekv")
