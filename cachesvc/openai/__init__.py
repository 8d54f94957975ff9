"""The OpenAI wire format, once, for the proxy, the reference model server and the stand-in upstream: JSON in and
out (orjson), response bodies and stream chunks, error bodies, SSE encoding and parsing, and the canonical answer."""
