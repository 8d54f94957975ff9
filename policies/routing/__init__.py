"""Adapter routing: LinUCB routers that choose a LoRA adapter per request, and the POLAR cache controllers that
choose which adapters stay resident. Pure logic: no I/O, no clocks; the service drives them."""
