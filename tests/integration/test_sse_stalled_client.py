"""A subscriber that stops reading but keeps its connection open, against a real edge process.

Found by a probing review: the edge's write to such a client blocked for ever (uvicorn waits for
the socket to drain with no bound), so the stream never reached its next check — not its overflow
end, not its token's expiry — and held its tenant's stream slot (``LEDGERFLOW_SSE_PER_TENANT``) and
its queued frames until the client chose to close. With ``LEDGERFLOW_SSE_PER_TENANT=1`` the tenant's
next stream was a 429 for as long as the stalled client kept its socket.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx

from ledgerflow.config import Settings
from ledgerflow.sse_client import RawStream, SseHttpError
from tests.support.processes import running_edge
from tests.support.turns import publish_turns

TURNS = 150
CONTENT = 60_000  # 150 frames of ~60 KB: more than the kernel's socket buffers (4 MiB) hold, fewer
# than the mailbox (1,000 frames): no overflow, the stream just waits for its client


def _metric(base: str, line_start: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


def test_a_subscriber_that_stops_reading_is_cut_off_and_frees_its_stream_slot(
    settings: Settings, log_dir: Path, tokens
) -> None:
    token = tokens("acme", "subscriber")
    env = {
        "LEDGERFLOW_WRITE_TIMEOUT_S": "2",
        "LEDGERFLOW_SSE_PER_TENANT": "1",
        "LEDGERFLOW_SSE_HEARTBEAT_S": "0.5",  # the stream keeps writing: each write must return
    }

    async def scenario(port: int) -> tuple[float, bool]:
        stalled = await RawStream(
            "127.0.0.1", port, "/v1/streams/tenant", token, rcvbuf=4096, buffer_limit=4096
        ).open()
        try:
            try:
                (await RawStream("127.0.0.1", port, "/v1/streams/tenant", token).open()).close()
                raise AssertionError("a second stream opened although the tenant may hold one")
            except SseHttpError as exc:
                assert exc.status == 429, exc
            # the stalled client reads nothing
            await publish_turns(settings, f"conv-{uuid.uuid4().hex[:8]}", TURNS, "x" * CONTENT)
            began = time.monotonic()
            while True:  # the tenant's one slot: free once the edge cut the stalled stream
                try:
                    fresh = await RawStream("127.0.0.1", port, "/v1/streams/tenant", token).open()
                except SseHttpError as exc:
                    assert exc.status == 429, exc
                    if time.monotonic() - began > 20:
                        return time.monotonic() - began, False
                    await asyncio.sleep(0.5)
                    continue
                fresh.close()
                return time.monotonic() - began, True
        finally:
            stalled.close()

    with running_edge(settings, log_dir, extra_env=env) as (_, base):
        port = int(base.rsplit(":", 1)[1])
        took, freed = asyncio.run(scenario(port))
        cut = _metric(base, 'ledgerflow_edge_limited_total{limit="write_timeout"}')
    assert freed, (
        f"the stalled client still held the tenant's only stream slot {took:.1f} s after the traffic"
    )
    assert cut >= 1
