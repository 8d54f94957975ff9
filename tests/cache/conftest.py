"""Fixtures of the cache tests: a real redis-server per test (tests/redis_server.py), for the Redis store."""

from tests.redis_server import redis_cluster, redis_server, redis_server_aof  # noqa: F401  (fixtures)
