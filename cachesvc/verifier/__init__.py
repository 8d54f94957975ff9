"""The service side of verification: WordNet's data on disk, word vectors, the learned verifier's wiring."""
