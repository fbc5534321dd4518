"""Reading ahead and writing behind (mssoft.workflows.overlap)."""

import threading

import pytest

from mssoft.workflows.overlap import WriteBehind, read_ahead


def test_read_ahead_keeps_order_and_loads_the_next_item_in_a_thread():
    threads = []

    def load(x):
        threads.append(threading.current_thread().name)
        return 10 * x

    assert list(read_ahead(range(5), load)) == [0, 10, 20, 30, 40]
    assert all(name.startswith("mssoft-read") for name in threads)
    assert list(read_ahead([], load)) == []


def test_read_ahead_raises_the_error_of_the_item_that_is_due():
    def load(x):
        if x == 2:
            raise ValueError("bad scan 2")
        return x

    results = read_ahead(range(4), load)
    assert next(results) == 0 and next(results) == 1
    with pytest.raises(ValueError, match="bad scan 2"):
        next(results)


def test_write_behind_runs_jobs_in_order_and_reports_errors():
    done = []
    with WriteBehind() as writer:
        for i in range(4):
            writer.submit(done.append, i)
    assert done == [0, 1, 2, 3]

    def fail():
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), WriteBehind() as writer:
        writer.submit(fail)
    with pytest.raises(OSError, match="disk full"), WriteBehind() as writer:
        writer.submit(fail)
        writer.submit(done.append, 5)  # waits for the failed job first
    assert done[-1] == 3
