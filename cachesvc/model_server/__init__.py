"""The reference model server: an OpenAI-compatible backend on transformers, with KV eviction and runtime LoRA."""
