"""Thread safety: burn-after-read races have exactly one winner; concurrent
reveal, expose, compare, wipe and expiry neither crash nor deadlock."""

from __future__ import annotations

import random
import threading
import time

from cypher_cell import CellWipedError, CypherCell


def test_volatile_race_has_exactly_one_winner() -> None:
    for _ in range(200):
        cell = CypherCell(b"one-time", volatile=True)
        barrier = threading.Barrier(8)
        wins: list[bytes] = []

        def reader(
            cell: CypherCell = cell, barrier: threading.Barrier = barrier, wins: list[bytes] = wins
        ) -> None:
            barrier.wait()
            try:
                if random.random() < 0.5:
                    wins.append(cell.reveal())
                else:
                    with cell.expose() as view:
                        wins.append(bytes(view))
            except CellWipedError:
                pass

        threads = [threading.Thread(target=reader) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
            assert not t.is_alive()
        assert wins == [b"one-time"]


def test_concurrent_reads_wipes_and_expiry_do_not_crash_or_deadlock() -> None:
    cells = [CypherCell(bytes([i]) * (i + 1), ttl_sec=random.uniform(0.01, 0.4)) for i in range(64)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                i = rng.randrange(len(cells))
                c = cells[i]
                try:
                    op = rng.randrange(6)
                    if op == 0:
                        assert c.reveal() == bytes([i]) * (i + 1)
                    elif op == 1:
                        with c.expose() as view:
                            assert len(view) == i + 1
                    elif op == 2:
                        assert c == cells[(i + 1) % len(cells)] or True
                    elif op == 3 and rng.random() < 0.05:
                        c.wipe()
                    elif op == 4:
                        cells[i] = CypherCell(bytes([i]) * (i + 1), ttl_sec=rng.uniform(0.01, 0.2))
                    else:
                        _ = c.wiped, c.reveal_masked()
                except CellWipedError:
                    pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    threading.Event().wait(1.5)
    stop.set()
    for t in threads:
        t.join(timeout=20)
        assert not t.is_alive(), "a thread deadlocked"
    assert errors == []


def test_a_b_and_b_a_comparisons_in_parallel_do_not_deadlock() -> None:
    a, b = CypherCell(b"same"), CypherCell(b"same")
    done = threading.Event()

    def compare(x: CypherCell, y: CypherCell) -> None:
        for _ in range(20_000):
            assert x == y

    t1 = threading.Thread(target=compare, args=(a, b))
    t2 = threading.Thread(target=compare, args=(b, a))
    t1.start()
    t2.start()
    t1.join(timeout=30)
    t2.join(timeout=30)
    done.set()
    assert not t1.is_alive() and not t2.is_alive()


def test_a_block_ending_releases_its_own_views_only() -> None:
    """Blocks of different cells open and close in six threads, each keeping
    sub-views past its block: every kept view is released when its own block
    ends, while views of blocks still open in other threads keep working."""
    cells = [CypherCell(bytes([i + 1]) * 40) for i in range(6)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def churn(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(300):
                with cells[i].expose() as view:
                    kept = [view[:], memoryview(view)[1:], view.cast("c")]
                    for _ in range(3):
                        time.sleep(0)  # let other threads' blocks end (and scan) meanwhile
                        assert all(k.tobytes() == bytes([i + 1]) * len(k) for k in kept)
                for k in kept:
                    try:
                        k.tobytes()
                    except ValueError:
                        continue
                    raise AssertionError("a view outlived its block")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a thread deadlocked"
    assert errors == []
