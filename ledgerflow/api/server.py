"""``ledgerflow serve``: the edge on uvicorn, with SSE knobs from the environment and a
graceful shutdown that ends streams instead of waiting for them.

On SIGTERM/SIGINT uvicorn stops accepting connections and waits for open ones before it
runs the app's lifespan shutdown, so an SSE stream would hold the process until the
graceful timeout and then be cut. ``EdgeServer.handle_exit`` therefore, in order:
1. sets ``EdgeContext.closing`` (``/readyz`` turns 503, new streams are refused with 503),
2. wakes every stream, which ends with ``retry:`` and ``event: shutdown``,
3. hands over to uvicorn, which lets in-flight requests finish, closes idle
   connections, and then runs the lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.types import Message, Receive, Scope, Send
from uvicorn.config import LOGGING_CONFIG

from ledgerflow import logformat
from ledgerflow.api.app import create_app
from ledgerflow.api.hub import CATCH_UP_SLOTS, CATCH_UP_STALL_S, DEFAULT_QUEUE
from ledgerflow.api.limits import EdgeLimits
from ledgerflow.api.protocol import edge_protocol
from ledgerflow.config import Settings
from ledgerflow.envnumbers import DAY_S, env_number, env_whole

GRACEFUL_TIMEOUT_S = 5
DEFAULT_HEARTBEAT_S = 15.0
DEFAULT_REAUTH_BEFORE_S = 30.0
MIN_STALL_S = 2.0
"""The shortest catch-up stall bound: above the catch-up reader's 1 s empty read, which a range
ending in a transaction marker (``policy.decisions`` is written in transactions) takes to end;
below it every such catch-up would give up there and its client reconnect to the same range."""


@dataclass(frozen=True, slots=True)
class SseKnobs:
    """SSE tuning: ``LEDGERFLOW_SSE_HEARTBEAT_S``, ``_QUEUE``, ``_REAUTH_BEFORE_S``,
    ``_CATCH_UP_STALL_S``, ``_CATCH_UP_SLOTS``."""

    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    queue: int = DEFAULT_QUEUE
    reauth_before_s: float = DEFAULT_REAUTH_BEFORE_S
    catch_up_stall_s: float = CATCH_UP_STALL_S
    catch_up_slots: int = CATCH_UP_SLOTS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SseKnobs:
        env = os.environ if env is None else env
        return cls(
            heartbeat_s=env_number(env, "LEDGERFLOW_SSE_HEARTBEAT_S", DEFAULT_HEARTBEAT_S, 0.05),
            queue=env_whole(env, "LEDGERFLOW_SSE_QUEUE", DEFAULT_QUEUE, 1),
            reauth_before_s=env_number(env, "LEDGERFLOW_SSE_REAUTH_BEFORE_S", DEFAULT_REAUTH_BEFORE_S, 0.0),
            catch_up_stall_s=env_number(
                env, "LEDGERFLOW_SSE_CATCH_UP_STALL_S", CATCH_UP_STALL_S, MIN_STALL_S, DAY_S
            ),
            catch_up_slots=env_whole(env, "LEDGERFLOW_SSE_CATCH_UP_SLOTS", CATCH_UP_SLOTS, 1),
        )


KEEP_ALIVE_S = 75
"""How long an idle HTTP/1.1 connection stays open. Longer than clients keep one for reuse
(httpx: 5 s): with uvicorn's default, also 5 s, a request sent just as the edge closed the
connection was lost without an answer (seen in the chaos run under a saturated CPU)."""


class EdgeServer(uvicorn.Server):
    """uvicorn's server, ending SSE streams first when asked to exit (see the module doc)."""

    def __init__(
        self, config: uvicorn.Config, app: Starlette, on_ready: Callable[[], None] | None = None
    ) -> None:
        super().__init__(config)
        self._app = app
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_ready = on_ready

    async def startup(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)
        if self.started and self._on_ready is not None:  # listening, lifespan done
            self._on_ready()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A plain signal handler: hop onto the event loop (thread-safe, and wakes it).
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(begin_shutdown, self._app)
        super().handle_exit(sig, frame)


def begin_shutdown(app: Starlette) -> None:
    """Steps 1 and 2: mark the edge closing and wake every stream so it ends now."""
    ctx = getattr(app.state, "ctx", None)
    if ctx is not None:
        ctx.closing.set()
        ctx.hub.wake_all()


class ApplyKnobs:
    """ASGI wrapper that applies ``SseKnobs`` once the lifespan has built the context,
    before uvicorn starts listening (``create_app`` takes only ``heartbeat_s`` today)."""

    def __init__(self, app: Starlette, knobs: SseKnobs) -> None:
        self.app = app
        self.knobs = knobs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_after_tuning(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                ctx = self.app.state.ctx
                ctx.reauth_before_s = self.knobs.reauth_before_s
                ctx.catch_up_stall_s = self.knobs.catch_up_stall_s
                ctx.hub.queue_size = self.knobs.queue
                ctx.hub.catch_up_slots = self.knobs.catch_up_slots
            await send(message)

        await self.app(scope, receive, send_after_tuning)


def serve(settings: Settings, on_ready: Callable[[], None] | None = None) -> int:
    knobs = SseKnobs.from_env()
    limits = EdgeLimits.from_env()
    json_logs = logformat.log_format() == "json"
    if json_logs:
        logformat.use_json()
    app = create_app(settings, heartbeat_s=knobs.heartbeat_s)
    config = uvicorn.Config(
        ApplyKnobs(app, knobs),
        host=settings.http_host,
        port=settings.http_port,
        log_level="warning",
        # JSON: uvicorn's loggers propagate to the root handler instead of uvicorn's own format.
        log_config=None if json_logs else LOGGING_CONFIG,
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT_S,
        timeout_keep_alive=KEEP_ALIVE_S,
        # h11 with deadlines on slow clients (api/protocol.py), also where httptools is installed.
        http=edge_protocol(limits),
        access_log=False,
        lifespan="on",
    )
    server = EdgeServer(config, app, on_ready)
    server.run()
    # uvicorn logs a failed start-up (lifespan, bind) and returns without raising.
    return 0 if server.started else 1
