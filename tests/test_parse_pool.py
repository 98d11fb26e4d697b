"""The parsing worker process: small batches stay in the daemon, and the worker never
outlives the process that started it, even one that is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from inbox_email.adapter import convert_mails
from inbox_email.mailbox import FetchedMail
from inbox_email.parse_pool import MIN_WORKER_MAILS, ParsePool

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]
RAW = b"From: a@example.net\r\nSubject: hello\r\nMessage-ID: <w-1@example.net>\r\n\r\nHi\r\n"

#: A daemon stand-in: starts the worker with one batch, says so, then waits to be killed.
DAEMON = f"""
import asyncio, sys, time
sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "adapters")!r}]
from inbox_email.adapter import convert_mails
from inbox_email.mailbox import FetchedMail
from inbox_email.parse_pool import PARSE_POOL

async def main() -> None:
    mails = [FetchedMail("INBOX", uid, 1, {RAW!r}, 60, False) for uid in range({MIN_WORKER_MAILS})]
    PARSE_POOL.acquire()
    future = PARSE_POOL.submit(convert_mails, mails, mails=len(mails))
    assert future is not None
    await PARSE_POOL.result(future)
    print("parsed", flush=True)
    time.sleep(600)

asyncio.run(main())
"""


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # it ended while we looked
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_small_batch_is_left_to_the_caller() -> None:
    pool = ParsePool()
    pool.acquire()
    mails = [FetchedMail("INBOX", 1, 1, RAW, len(RAW), False)]

    assert pool.submit(convert_mails, mails, mails=MIN_WORKER_MAILS - 1) is None
    await pool.release()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
async def test_worker_ends_when_the_daemon_is_killed() -> None:
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, "-c", DAEMON, stdout=asyncio.subprocess.PIPE
    )
    assert daemon.stdout is not None
    workers: list[int] = []
    try:
        assert (await asyncio.wait_for(daemon.stdout.readline(), 60)).strip() == b"parsed"
        workers = [pid for pid in children_of(daemon.pid) if running(pid)]
        assert workers, "the daemon stand-in started no worker"
        daemon.send_signal(signal.SIGKILL)
        await daemon.wait()
        deadline = time.monotonic() + 30
        while any(running(pid) for pid in workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert [pid for pid in workers if running(pid)] == []
    finally:
        if daemon.returncode is None:
            daemon.send_signal(signal.SIGKILL)
            await daemon.wait()
        for pid in workers:  # never leave one behind, even when the test fails
            if running(pid):
                os.kill(pid, signal.SIGKILL)
