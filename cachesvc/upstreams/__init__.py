"""The model servers behind the proxy: pooled clients and their load, the embedded model server, the stand-in."""
