"""Serving until SIGTERM (or SIGINT), then stopping in order: the listener closes (new connections are refused) and
idle keep-alive connections with it; requests in flight, streams included, get ``server.drain_timeout_s`` to finish
(their connections close after the response); what is still running then is cancelled; then the app's cleanup runs,
which closes the cache and so flushes and closes its store; then ``serve`` returns (the process exits 0).

aiohttp's own ``web.run_app`` also waits for handlers on SIGTERM, but for up to twice its ``shutdown_timeout`` (a
wait for the handlers, then another one for them to end after cancelling their payloads) and says nothing about
what it cut; here the bound is the configured one and the drain is logged.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable

from aiohttp import web

from cachesvc.openai.http import Handler

log = logging.getLogger("cachesvc.drain")
SIGNALS = (signal.SIGTERM, signal.SIGINT)
CUT_GRACE_S = 1.0  # after the drain: how long cancelled requests get to unwind before their connections close
KEEPALIVE_TIMEOUT_S = 75.0  # as web.run_app


class InFlight:
    """The tasks of the requests being handled; ``track`` is the middleware that keeps the set."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[object]] = set()

    @web.middleware
    async def track(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        task = asyncio.current_task()  # aiohttp runs each request in a task of its own, to the response's last byte
        if task is None:
            return await handler(request)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return await handler(request)


IN_FLIGHT = web.AppKey("cachesvc_in_flight", InFlight)


async def serve(app: web.Application, host: str, port: int, drain_timeout_s: float,
                announce: Callable[[str], None] = print) -> None:
    """Run ``app`` on ``host:port`` until SIGTERM or SIGINT, then drain (at most ``drain_timeout_s`` plus
    CUT_GRACE_S) and clean up. A second signal during the drain is logged and changes nothing."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def signalled(signum: signal.Signals) -> None:
        if stop.is_set():
            log.warning("%s during the drain: still draining (SIGKILL stops at once)", signum.name)
        else:
            log.info("%s: draining", signum.name, extra={"drain_timeout_s": drain_timeout_s})
        stop.set()

    for signum in SIGNALS:
        loop.add_signal_handler(signum, signalled, signum)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=KEEPALIVE_TIMEOUT_S, shutdown_timeout=CUT_GRACE_S)
    try:
        await runner.setup()  # the app's start-up: a signal now is answered once the site is up
        site = web.TCPSite(runner, host, port)
        await site.start()
        announce(f"listening on {site.name}")
        await stop.wait()
        await drain(runner, app.get(IN_FLIGHT), drain_timeout_s)
    finally:
        await runner.cleanup()  # the app's cleanup contexts, in reverse: the cache closes its store first
        for signum in SIGNALS:
            loop.remove_signal_handler(signum)
    log.info("stopped")


async def drain(runner: web.AppRunner, in_flight: InFlight | None, timeout_s: float) -> None:
    """Refuse new connections, let the requests in flight finish for up to ``timeout_s``, cancel the rest."""
    started = time.monotonic()
    for site in list(runner.sites):
        await site.stop()
    if runner.server is not None:
        runner.server.pre_shutdown()  # idle keep-alive connections close now, busy ones after their response
    if in_flight is None:
        return
    log.info("draining %d requests in flight, for up to %.1f s", len(in_flight.tasks), timeout_s,
             extra={"in_flight": len(in_flight.tasks)})
    deadline = started + timeout_s
    while in_flight.tasks and (left := deadline - time.monotonic()) > 0:
        await asyncio.wait(set(in_flight.tasks), timeout=left)
    cut = set(in_flight.tasks)
    if cut:
        log.warning("drain bound (%.1f s) reached: cutting %d requests", timeout_s, len(cut),
                    extra={"cut": len(cut)})
        for task in cut:
            task.cancel()
        await asyncio.wait(cut, timeout=CUT_GRACE_S)
    log.info("drained in %.2f s", time.monotonic() - started, extra={"cut": len(cut)})
