"""Training pairs for the learned verifier: shipped seed intents and the rewrites that multiply them."""
