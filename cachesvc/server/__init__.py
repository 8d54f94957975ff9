"""The proxy's HTTP side: the app factory, routes, the completions service, admin, health and metrics."""
