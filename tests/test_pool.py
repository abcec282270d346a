"""The CPU pipeline's worker pool: threads working together on one shared task."""

from __future__ import annotations

import threading
import time

import pytest

import gpuzarr
from gpuzarr.pipeline.pool import _executor, run_together


def test_run_together_runs_work_on_the_caller_and_workers_at_once() -> None:
    with gpuzarr.config.set(threads=3):
        ran_on: list[int] = []
        active = 0
        most_active = 0
        other_joined = threading.Event()
        lock = threading.Lock()

        def work() -> None:
            nonlocal active, most_active
            with lock:
                ran_on.append(threading.get_ident())
                active += 1
                most_active = max(most_active, active)
            if threading.get_ident() == caller:
                assert other_joined.wait(5)  # a worker joins while the caller works
            else:
                other_joined.set()
                time.sleep(0.01)
            with lock:
                active -= 1

        caller = threading.get_ident()
        run_together(work, 3)
        assert active == 0  # every call that started has returned
        assert caller in ran_on and len(set(ran_on)) >= 2 and most_active >= 2
        ran_on.clear()
        run_together(work, 1)  # one thread: the caller alone
        assert ran_on == [caller]


def test_run_together_does_not_wait_for_workers_that_start_after_the_work_is_done() -> None:
    """A worker that only gets to run once the caller's call has returned finds the
    work done: the caller does not wait for it, and it never calls ``work``."""
    with gpuzarr.config.set(threads=2):
        blocker = threading.Event()
        busy = [_executor().submit(blocker.wait, 10) for _ in range(2)]  # every worker is taken
        calls: list[int] = []
        run_together(lambda: calls.append(threading.get_ident()), 2)  # returns at once
        assert calls == [threading.get_ident()]
        blocker.set()
        for task in busy:
            task.result()
        # Two tasks that can only finish once both run at once: both workers are free,
        # so the queued worker (ahead of them in the queue) has run to its end.
        both_free = threading.Barrier(2, timeout=10)
        for task in [_executor().submit(both_free.wait) for _ in range(2)]:
            task.result()
        assert calls == [threading.get_ident()]


def test_run_together_raises_after_every_call_returned() -> None:
    with gpuzarr.config.set(threads=3):
        finished: list[bool] = []
        started = threading.Barrier(2, timeout=5)

        def caller_fails() -> None:
            if threading.current_thread() is threading.main_thread():
                started.wait()
                raise KeyError("caller")
            started.wait()  # (one worker: run_together(..., 2))
            time.sleep(0.02)
            finished.append(True)

        with pytest.raises(KeyError, match="caller"):
            run_together(caller_fails, 2)
        assert finished == [True]  # the worker ran to the end before the error came

        worker_started = threading.Event()

        def worker_fails() -> None:
            if threading.current_thread() is not threading.main_thread():
                worker_started.set()
                raise ValueError("worker")
            assert worker_started.wait(5)  # (a worker joins meanwhile)

        with pytest.raises(ValueError, match="worker"):
            run_together(worker_fails, 2)


def test_run_together_closes_the_call_when_a_worker_cannot_be_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool that refuses work (shut down) raises, and nothing runs ``work`` later."""
    from concurrent.futures import ThreadPoolExecutor

    from gpuzarr.pipeline import pool as pool_module

    closed_pool = ThreadPoolExecutor(1)
    closed_pool.shutdown()
    monkeypatch.setattr(pool_module, "_executor", lambda: closed_pool)
    calls: list[int] = []
    with gpuzarr.config.set(threads=3), pytest.raises(RuntimeError):
        run_together(lambda: calls.append(1), 3)
    assert calls == []
