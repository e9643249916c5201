"""A service being killed is not alive, even before the killing thread has reaped it.

The fault runs in a thread (``asyncio.to_thread``): ``kill`` sends SIGKILL, then ``wait``s,
holding CPython's waitpid lock. Meanwhile the load generator, on the event loop, sees its
connection drop and asks ``alive()``; ``poll()`` cannot take that lock and answers None
("running"), so the drop was blamed on a live edge (a failed chaos run on a Redis Cluster).
The test holds the lock itself, as the reaping thread would, at the moment the client asks.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from ledgerflow.chaos.services import Service


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except FileNotFoundError:
        return False


def test_a_service_is_not_alive_while_another_thread_reaps_its_kill(tmp_path: Path) -> None:
    service = Service("edge-1", ("serve",), {}, tmp_path / "edge-1.log")
    service.popen = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert service.alive()
    lock = service.popen._waitpid_lock  # type: ignore[attr-defined]
    with lock:  # the reaping thread's wait() would hold it now
        killer = threading.Thread(target=service.kill)
        killer.start()
        deadline = time.monotonic() + 10
        while not _zombie(service.popen.pid):  # SIGKILL delivered, not reaped yet
            assert time.monotonic() < deadline, "the child did not die within 10 s"
            time.sleep(0.01)
        assert service.popen.poll() is None  # CPython cannot tell while the lock is held …
        assert not service.alive(), "a service being killed looked alive to another thread"
    killer.join(10)
    assert not service.alive() and service.popen.returncode is not None
