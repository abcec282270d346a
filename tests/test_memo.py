"""gpuzarr._memo.BoundedMemo: a thread-safe memo that forgets its least recently used entries."""

from __future__ import annotations

import threading

from gpuzarr._memo import BoundedMemo


def test_forgets_the_least_recently_used_entry() -> None:
    memo: BoundedMemo[str, int] = BoundedMemo(2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1  # (now the most recently used)
    memo.put("c", 3)
    assert memo.get("b") is None and memo.get("a") == 1 and memo.get("c") == 3
    memo.put("a", 4)  # a new value for a stored key replaces it
    assert memo.get("a") == 4 and len(memo) == 2
    memo.discard("a")
    memo.discard("missing")
    assert memo.get("a") is None and len(memo) == 1
    memo.clear()
    assert len(memo) == 0


def test_limit_is_at_least_one() -> None:
    memo: BoundedMemo[int, int] = BoundedMemo(0)
    memo.put(1, 1)
    memo.put(2, 2)
    assert memo.get(1) is None and memo.get(2) == 2


def test_threads_share_it() -> None:
    memo: BoundedMemo[int, int] = BoundedMemo(64)

    def work(offset: int) -> None:
        for i in range(2000):
            memo.put(offset + i % 100, i)
            memo.get(offset + (i * 7) % 100)

    threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(memo) == 64
