"""The registered KV policy names (cachesvc.policies.kv), importable without torch (command-line help,
configuration checks)."""

POLICY_NAMES = ("random", "streaming_llm", "snapkv", "adakv", "criticalkv", "defensivekv", "layer_defensivekv")

# Fields every policy takes that the model server sets from its own keys (kv_budget, kv_window), not from options.
POLICY_BUDGET_FIELDS = ("compression_ratio", "budget_tokens", "window_size")
