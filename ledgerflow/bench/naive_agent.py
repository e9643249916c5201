"""The same policy logic as our worker, written as a textbook per-event faust agent.

    python -m ledgerflow.bench.naive_agent      (settings from LEDGERFLOW_* variables)

What "textbook" means here (the shape of faust's tutorials and of most user code):
``async for value in stream``, and for each event one ``await`` per effect: decode, call
the same pure ``decide`` (same builtin rule pack, chain heads in a dict), ``await
topic.send`` the decision, then one ``await redis.execute_command`` per read-model write
(the same ops ``project`` returns for the event and for its decision, applied without
fences). Same faust App settings as the worker (``ledgerflow.agents.app.create_app``),
so the only difference the benchmark sees is the agent's shape: per-event awaits versus
batches, one producer round per batch and one pipelined Redis round trip per batch.

It is deliberately generous to the naive shape: no fences (fewer Redis calls than a
correct version would need), decisions projected inline (no second agent), no DLQ.
"""

from __future__ import annotations

import faust
import redis.asyncio as aioredis

from ledgerflow.agents.app import create_app, raw_topic
from ledgerflow.config import Settings, load_settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainHead
from ledgerflow.errors import DecodeError
from ledgerflow.kafka.reference import OFF, builtin_default_pack
from ledgerflow.policy.wire import decide, head_after
from ledgerflow.projections.conversations import project
from ledgerflow.projections.keys import Keys
from ledgerflow.projections.ops import Position
from ledgerflow.redisclient import async_client
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS

APP_ID = "bench-naive-agent"


def build(settings: Settings) -> faust.App:
    app = create_app(settings, app_id=APP_ID)
    events = raw_topic(app, settings.topic(CONVERSATION_EVENTS))
    decisions = raw_topic(app, settings.topic(POLICY_DECISIONS))
    keys = Keys.for_prefix(settings.topic_prefix)
    pack, training = builtin_default_pack(), OFF
    heads: dict[str, ChainHead] = {}
    clients: list[aioredis.Redis] = []

    @app.agent(events, name="naive-policy")
    async def naive_policy(stream: faust.StreamT[bytes]) -> None:
        if not clients:
            clients.append(async_client(settings.redis_url, socket_timeout=10))
        redis = clients[0]
        async for value in stream:
            message = stream.current_event.message  # type: ignore[union-attr]
            position = Position(message.topic, message.partition, message.offset)
            try:
                event = codec.decode(value)
            except DecodeError:
                continue
            record = decide(event, value, pack, training, heads.get(event.subject))
            groups = project(event, position, keys)
            if record is not None:
                heads[event.subject] = head_after(record)
                await decisions.send(key=event.subject.encode(), value=codec.encode(record))
                groups += project(record, position, keys)
            for group in groups:
                for op in group.ops:
                    await redis.execute_command(op.command, op.key, *op.args)  # type: ignore[no-untyped-call]

    return app


def main() -> None:
    app = build(load_settings())
    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
