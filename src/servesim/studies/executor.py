"""Run independent tasks in this process, in local worker processes, or on a Ray cluster.

Every backend yields `(index, result)` as each task finishes, so callers can record results as they
arrive. `fn` must be a module-level function (it is pickled by reference) that catches its own
errors and returns a picklable value.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from servesim.core.errors import ArgumentError

BACKENDS = ("local", "ray")


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def run_tasks(
    fn: Callable[[Any], Any],
    tasks: Sequence[Any],
    workers: int | None = None,
    backend: str = "local",
    address: str | None = None,
) -> Iterator[tuple[int, Any]]:
    """Results of `fn(task)` in completion order. `workers=1` (local) runs in this process."""
    check_backend(workers, backend, address)
    if backend == "ray":
        return _run_ray(fn, tasks, workers, address)
    workers = min(workers or default_workers(), max(1, len(tasks)))
    if workers == 1:
        return ((i, fn(task)) for i, task in enumerate(tasks))
    return _run_processes(fn, tasks, workers)


def check_backend(workers: int | None, backend: str, address: str | None) -> None:
    """ConfigError for arguments no backend can run with (before anything is written)."""
    if backend not in BACKENDS:
        raise ArgumentError("backend", f"expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if workers is not None and workers < 1:
        raise ArgumentError("workers", f"must be >= 1, got {workers}")
    if backend == "ray":
        _require_ray()
    elif address is not None:
        raise ArgumentError("address", "only meaningful with the ray backend")


def _run_processes(fn, tasks, workers) -> Iterator[tuple[int, Any]]:
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init)
    try:
        pending = {pool.submit(fn, task): i for i, task in enumerate(tasks)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=pending.get):  # same-moment finishes in task order
                index = pending.pop(future)
                yield index, future.result()
    except BaseException:
        # Interrupted (Ctrl-C, or the caller stopped): stop the simulations in flight too;
        # finished results were already yielded.
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _worker_init() -> None:
    """Workers leave Ctrl-C to the parent (no traceback per worker) and exit when the parent is
    gone (`kill -9` of a sweep must not leave them running)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _require_ray() -> None:
    if not ray_available():
        raise ArgumentError(
            "backend", "ray is not installed; pip install 'servesim[ray]' (or use the local backend)"
        )


def _run_ray(fn, tasks, workers, address) -> Iterator[tuple[int, Any]]:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address is None:
            kwargs["num_cpus"] = workers or default_workers()
        ray.init(address=address, **kwargs)
    try:
        remote = ray.remote(num_cpus=1, max_retries=1)(fn)
        pending = {remote.remote(task): i for i, task in enumerate(tasks)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(done[0])
            yield index, ray.get(done[0])
    finally:
        if started_here:
            ray.shutdown()
