"""Cache, eviction and routing policies (installed as cachesvc.policies)."""
