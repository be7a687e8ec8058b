"""How codecs spread work over CPU threads (:func:`quantkit.codecs.base.run_in_chunks`): consecutive chunks that
cover the range once; inline on the calling thread when torch has one thread or there is one chunk, otherwise on
worker threads whose torch ops are single-threaded; off CPU, one call on the whole range."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

from quantkit.codecs.base import run_in_chunks


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _record(total: int, step: int, device: str) -> list[tuple[list[int], str, int]]:
    """(indices covered, thread name, torch threads inside the call) for each call, in call order."""
    calls: list[tuple[list[int], str, int]] = []
    lock = threading.Lock()

    def work(part: slice) -> None:
        with lock:
            calls.append((list(range(total)[part]), threading.current_thread().name, torch.get_num_threads()))

    run_in_chunks(work, total, step, torch.device(device))
    return calls


def test_cpu_work_is_cut_into_consecutive_chunks_that_cover_the_range_once():
    with torch_threads(1):
        calls = _record(10, 3, "cpu")
    assert [indices for indices, _, _ in calls] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]


def test_off_cpu_the_work_runs_once_on_the_whole_range():
    with torch_threads(2):
        calls = _record(10, 3, "meta")
    assert [indices for indices, _, _ in calls] == [list(range(10))]


def test_with_one_torch_thread_the_chunks_run_on_the_calling_thread():
    with torch_threads(1):
        calls = _record(10, 3, "cpu")
    assert {(name, inner) for _, name, inner in calls} == {(threading.current_thread().name, 1)}


def test_a_single_chunk_runs_on_the_calling_thread_single_threaded():
    with torch_threads(2):
        calls = _record(3, 5, "cpu")
        assert torch.get_num_threads() == 2
    assert [(indices, name, inner) for indices, name, inner in calls] == [
        ([0, 1, 2], threading.current_thread().name, 1)
    ]


def test_with_several_torch_threads_the_chunks_run_on_single_threaded_workers():
    with torch_threads(2):
        calls = _record(10, 3, "cpu")
        assert torch.get_num_threads() == 2  # the caller's setting survives
    assert sorted(indices for indices, _, _ in calls) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert all(name.startswith("quantkit-codec") and inner == 1 for _, name, inner in calls)
