"""Parse batches of mail in a worker process while the event loop triages and stores.

Parsing MIME is the e-mail adapter's share of ingest's CPU (about half of it): run in a
second process, it uses the machine's other core while the daemon triages and stores the
batch before (DESIGN.md, "Where the time goes"). One worker serves every e-mail source of
the process. Small batches are parsed in the calling process, since starting and feeding a
worker costs more than they do; so is everything on a machine with one core.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Final, TypeVar

from inbox_daemon.errors import RetryableError

logger = logging.getLogger(__name__)

_A = TypeVar("_A")
_R = TypeVar("_R")

#: A batch of at least this many mails is parsed in the worker.
MIN_WORKER_MAILS: Final = 32


class ParsePool:
    """A worker process, started at the first large batch and stopped with its last user.

    Each adapter that may use it calls :meth:`acquire` when it opens and :meth:`release`
    when it closes.
    """

    def __init__(self) -> None:
        self._executor: ProcessPoolExecutor | None = None
        self._users = 0
        # Which worker runs each submitted batch, to retire it if it dies.
        self._submitted: weakref.WeakKeyDictionary[asyncio.Future[Any], ProcessPoolExecutor]
        self._submitted = weakref.WeakKeyDictionary()

    def acquire(self) -> None:
        """Count a user; the worker is only started by :meth:`run`."""
        self._users += 1

    async def release(self) -> None:
        """Forget a user; the last one stops the worker (without blocking the loop)."""
        self._users = max(self._users - 1, 0)
        if self._users == 0 and self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, cancel_futures=True)

    def submit(
        self, work: Callable[[_A], _R], argument: _A, *, mails: int
    ) -> asyncio.Future[_R] | None:
        """Start ``work(argument)`` in the worker for a batch of ``mails`` large enough; ``None``
        when the caller should run it itself. Await the future with :meth:`result`."""
        if mails < MIN_WORKER_MAILS or self._users == 0 or (os.cpu_count() or 1) < 2:
            return None
        executor = self._executor or self._start()
        future = asyncio.get_running_loop().run_in_executor(executor, work, argument)
        self._submitted[future] = executor
        return future

    async def result(self, future: asyncio.Future[_R]) -> _R:
        """The outcome of work started by :meth:`submit`.

        Raises:
            RetryableError: the worker died (killed, out of memory) during the batch; the
                next batch starts a new one.
        """
        executor = self._submitted.get(future)
        try:
            return await future
        except BrokenProcessPool as exc:
            if executor is not None and self._executor is executor:
                self._executor = None
                executor.shutdown(wait=False, cancel_futures=True)
            raise RetryableError("the mail parsing worker process died") from exc

    def _start(self) -> ProcessPoolExecutor:
        # "spawn": forking a process that runs an event loop and threads copies their locks.
        context = multiprocessing.get_context("spawn")
        self._executor = ProcessPoolExecutor(
            max_workers=1, mp_context=context, initializer=_exit_with_parent
        )
        logger.info("started a worker process for parsing mail")
        return self._executor


def _exit_with_parent() -> None:
    """In the worker: end it when the process that started it ends, however that ends.

    A worker waiting for work holds its own end of the queue's pipe, so it would outlive a
    daemon that was killed (SIGKILL, out of memory) instead of stopping it.
    """
    parent = multiprocessing.parent_process()
    if parent is not None:
        watch = threading.Thread(
            target=_exit_when_ready, args=(parent.sentinel,), name="parent-watch", daemon=True
        )
        watch.start()


def _exit_when_ready(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


#: The worker of this process, shared by its e-mail sources.
PARSE_POOL: Final = ParsePool()
