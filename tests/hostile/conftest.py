"""The hostile-input suite: careless and malicious clients, and upstreams that break the wire format, against the
real proxy over loopback. One test (at least) per case of docs/reliability.md."""
