"""The load-test harness (`cachesvc loadtest`): workloads with ground truth, open- and closed-loop load through
locust in its own process, metrics, and a self-contained report. Installed as ``cachesvc.loadtests``.

Only ``locust_user.py`` imports locust (which patches the standard library with gevent); it runs in the locust
process alone. Everything else here is plain Python that the command and the tests import.
"""
