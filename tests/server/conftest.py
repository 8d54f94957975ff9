"""Fixtures of the server tests: a real redis-server per test (tests/redis_server.py), for the shared rate limits."""

from tests.redis_server import redis_cluster, redis_server  # noqa: F401  (fixtures)
