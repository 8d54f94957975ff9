"""The embedded model server runs the real model; it scores KV entries with the torch references."""

from tests.model_server.conftest import _torch_reference_scoring  # noqa: F401  (an autouse fixture here too)
