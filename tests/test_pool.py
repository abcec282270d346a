"""The CPU pipeline's worker pool: threads working together on one shared task."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

import gpuzarr
from gpuzarr import _cpu_hold
from gpuzarr.pipeline import pool as pool_module
from gpuzarr.pipeline.pool import run_together
from gpuzarr.stores import _threads as store_threads


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


def test_run_together_does_not_wait_for_workers_that_start_after_the_work_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A helper that only gets to run once the caller's call has returned finds the
    work done: the caller does not wait for it, and it never calls ``work``."""
    posted: list[tuple[Any, Any]] = []
    monkeypatch.setattr(pool_module._Helper, "post", lambda helper, job: posted.append((helper, job)))
    with gpuzarr.config.set(threads=2):
        calls: list[int] = []
        run_together(lambda: calls.append(threading.get_ident()), 2)  # returns at once
        assert calls == [threading.get_ident()] and len(posted) == 1
        helper, late_join = posted[0]
        late_join()  # (as the helper thread would, once it got to run)
        pool_module._team.give_back(helper)
        assert calls == [threading.get_ident()]


def test_run_together_runs_with_fewer_helpers_while_the_others_are_busy() -> None:
    """Helpers still at work for another caller are not waited for: the call runs with
    those that are free (here none, the team being full), the caller doing the rest."""
    with gpuzarr.config.set(threads=2):
        release = threading.Event()
        helper_busy = threading.Event()

        def hold_the_helper() -> None:
            if threading.current_thread().name.startswith("gpuzarr-helper"):
                helper_busy.set()
                assert release.wait(10)
            else:
                assert helper_busy.wait(10)

        holder = threading.Thread(target=run_together, args=(hold_the_helper, 2))
        holder.start()
        try:
            assert helper_busy.wait(10)
            calls: list[str] = []
            run_together(lambda: calls.append(threading.current_thread().name), 2)
            assert calls == [threading.current_thread().name]
        finally:
            release.set()
            holder.join(10)


@pytest.mark.skipif(
    pool_module._current_cpu is None or len(os.sched_getaffinity(0)) < 2, reason="needs sched_setaffinity and 2 CPUs"
)
def test_run_together_keeps_helpers_off_the_callers_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    allowed = os.sched_getaffinity(0)

    def masks_with_caller_on(caller_cpu: int) -> tuple[list[set[int]], list[set[int]]]:
        monkeypatch.setattr(pool_module, "_current_cpu", lambda: caller_cpu)
        helper_masks: list[set[int]] = []
        caller_masks: list[set[int]] = []
        joined = threading.Event()

        def work() -> None:
            if threading.current_thread().name.startswith("gpuzarr-helper"):
                helper_masks.append(os.sched_getaffinity(0))
                joined.set()
            else:
                caller_masks.append(os.sched_getaffinity(0))
                assert joined.wait(10)

        with gpuzarr.config.set(threads=2):
            run_together(work, 2)
        return helper_masks, caller_masks

    for caller_cpu in sorted(allowed)[:2]:  # (the second moves the helper again)
        # The helper runs anywhere but the caller's CPU; the caller is held on it while
        # they work, and given back every CPU it had afterwards.
        assert masks_with_caller_on(caller_cpu) == ([allowed - {caller_cpu}], [{caller_cpu}])
        assert os.sched_getaffinity(0) == allowed


@pytest.mark.skipif(
    pool_module._current_cpu is None or len(os.sched_getaffinity(0)) < 2, reason="needs sched_setaffinity and 2 CPUs"
)
def test_run_together_holds_one_caller_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second caller, while the first is held on its CPU, runs free (two held callers
    could end up sharing one CPU)."""
    allowed = os.sched_getaffinity(0)
    monkeypatch.setattr(pool_module, "_team", pool_module._Team())
    monkeypatch.setattr(pool_module, "_current_cpu", lambda: min(allowed))
    seen: dict[str, set[int]] = {}

    def second_work() -> None:
        if threading.current_thread().name == "second-caller":
            seen["second"] = os.sched_getaffinity(0)

    go = threading.Event()

    def second_caller() -> None:
        assert go.wait(10)
        run_together(second_work, 2)

    def first_work() -> None:
        if threading.current_thread() is threading.main_thread():
            seen["first"] = os.sched_getaffinity(0)
            go.set()
            second.join(10)

    with gpuzarr.config.set(threads=3):
        # (Started before the first is held: a thread starts with its creator's CPUs.)
        second = threading.Thread(target=second_caller, name="second-caller")
        second.start()
        run_together(first_work, 2)
        assert seen == {"first": {min(allowed)}, "second": allowed}
        assert os.sched_getaffinity(0) == allowed
        # The first is done: the next caller is held again, once a helper is idle to
        # work with it (a helper that has not woken yet to find its work done is not
        # taken, and a caller with no helper is not held).
        team = pool_module._team
        deadline = time.monotonic() + 10
        while len(team._idle) < team._made and time.monotonic() < deadline:
            time.sleep(0.001)
        held: list[set[int]] = []

        def record_callers_cpus() -> None:
            if threading.current_thread() is threading.main_thread():
                held.append(os.sched_getaffinity(0))

        run_together(record_callers_cpus, 2)
        assert held == [{min(allowed)}]
    assert not _cpu_hold.holding()


@pytest.mark.skipif(
    pool_module._current_cpu is None or len(os.sched_getaffinity(0)) < 2, reason="needs sched_setaffinity and 2 CPUs"
)
def test_pool_threads_started_by_a_held_caller_get_its_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread starts with its creator's CPUs: a pool's worker first started from inside
    a held call must not stay on the held caller's one CPU."""
    allowed = os.sched_getaffinity(0)
    monkeypatch.setattr(pool_module, "_team", pool_module._Team())
    monkeypatch.setattr(pool_module, "_current_cpu", lambda: min(allowed))
    monkeypatch.setattr(pool_module, "_pool", None)
    monkeypatch.setattr(store_threads, "_pools", {})
    seen: dict[str, set[int]] = {}

    def work() -> None:
        if threading.current_thread() is threading.main_thread():
            seen["caller"] = os.sched_getaffinity(0)
            seen["pipeline pool"] = pool_module._executor().submit(os.sched_getaffinity, 0).result()
            seen["store pool"] = store_threads._get_pool(3).submit(os.sched_getaffinity, 0).result()

    with gpuzarr.config.set(threads=2):
        run_together(work, 2)
    assert seen == {"caller": {min(allowed)}, "pipeline pool": allowed, "store pool": allowed}
    assert not _cpu_hold.holding()


@pytest.mark.skipif(pool_module._current_cpu is None, reason="needs sched_setaffinity")
def test_run_together_gives_the_caller_its_cpus_back_when_work_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "_team", pool_module._Team())
    monkeypatch.setattr(pool_module, "_current_cpu", lambda: 0)
    caller_masks: list[set[int]] = [{0, 1}]  # (the calling thread's, pid 0; the last is its mask now)
    helper_masks: list[set[int]] = []

    def set_mask(pid: int, mask: set[int]) -> None:
        (caller_masks if pid == 0 else helper_masks).append(set(mask))

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(caller_masks[-1]), raising=False)
    monkeypatch.setattr(os, "sched_setaffinity", set_mask, raising=False)

    def work() -> None:
        if not threading.current_thread().name.startswith("gpuzarr-helper"):
            raise KeyError("caller")

    with gpuzarr.config.set(threads=2), pytest.raises(KeyError, match="caller"):
        run_together(work, 2)
    assert helper_masks == [{1}]  # (kept off the caller's CPU 0)
    assert caller_masks == [{0, 1}, {0}, {0, 1}]  # (held on CPU 0, then given both back)


def test_run_together_runs_unsteered_where_affinity_cannot_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> None:
        raise PermissionError("not here")

    monkeypatch.setattr(pool_module, "_team", pool_module._Team())
    monkeypatch.setattr(pool_module, "_current_cpu", lambda: 0)
    monkeypatch.setattr(pool_module._team, "_steer", True)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "sched_setaffinity", refuse, raising=False)
    ran_on: set[str] = set()
    joined = threading.Event()

    def work() -> None:
        ran_on.add(threading.current_thread().name)
        if threading.current_thread().name.startswith("gpuzarr-helper"):
            joined.set()
        else:
            assert joined.wait(10)

    with gpuzarr.config.set(threads=2):
        run_together(work, 2)
        assert not pool_module._team._steer
        run_together(work, 2)
    assert len(ran_on) == 2


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


def test_run_together_closes_the_call_when_a_helper_cannot_be_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """A helper thread that cannot be started raises, nothing runs ``work`` later, and
    the team can make that helper again."""

    def cannot_start(self: Any, *args: Any) -> None:
        raise RuntimeError("can't start new thread")

    team = pool_module._Team()
    monkeypatch.setattr(pool_module, "_team", team)
    monkeypatch.setattr(pool_module._Helper, "__init__", cannot_start)
    calls: list[int] = []
    with gpuzarr.config.set(threads=3), pytest.raises(RuntimeError):
        run_together(lambda: calls.append(1), 3)
    assert calls == [] and team._made == 0


@pytest.mark.parametrize("use_caller", [False, True])
def test_parallel_map_keeps_no_more_threads_at_work_than_max_threads(use_caller: bool) -> None:
    """``max_threads`` caps how many items run at once, on the pool's workers as with
    the caller taking part; results keep their order, and a failure is raised only once
    every item has run."""
    lock = threading.Lock()
    running = peak = 0
    ran: list[int] = []

    def work(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
            ran.append(i)
        if i == 3:
            raise ValueError("item 3")
        return i * i

    with gpuzarr.config.set(threads=4):
        assert pool_module.parallel_map(lambda i: i * i, list(range(12)), use_caller=use_caller, max_threads=2) == [
            i * i for i in range(12)
        ]
        with pytest.raises(ValueError, match="item 3"):
            pool_module.parallel_map(work, list(range(12)), use_caller=use_caller, max_threads=2)
        assert sorted(ran) == list(range(12)) and peak <= 2
        ran.clear()
        peak = 0
        with pytest.raises(ValueError, match="item 3"):
            pool_module.parallel_map(work, list(range(12)), use_caller=use_caller)
        assert sorted(ran) == list(range(12)) and peak > 2  # (uncapped: up to config.threads)
