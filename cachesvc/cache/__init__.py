"""The two-tier cache: request keys and controls, entries, the exact and semantic tiers over vector indexes, single
flight, and the document stores. Knows no HTTP."""
