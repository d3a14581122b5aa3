"""Where (instance, seed) tasks run: this process, a local process pool, or Ray (local or a cluster).

    govgym evaluate backend=ray                            # a local Ray with `workers` CPUs (ray.init)
    govgym evaluate backend=ray ray_address=auto           # ... or the Ray cluster this node belongs to
    govgym map --backend ray ray_address=ray://head:10001  # ... or a remote one (Ray Client)

Every harness over tasks (``govgym collect``, ``evaluate``, ``map``, ``tune``) hands its tasks to
``task_results``, which yields each task's result as it finishes, whichever backend runs it:

- ``local``: ``workers == 1`` runs the tasks one after another in this process; more, a spawned
  ``multiprocessing`` pool (spawn, not fork: torch threads and fork do not mix);
- ``ray``: each task is one ``ray.remote(num_cpus=1)`` task calling the same module-level task
  function, gathered with ``ray.wait`` as they finish. With ``ray_address=''`` a local Ray is
  started with ``ray.init(num_cpus=workers)`` and shut down at the end; with an address we connect to
  that cluster and leave it running. Ray is an optional extra (``pip install "govgym[ray]"``), imported
  only here and only when asked for.

Files stay append-safe on every backend: a task writes only files of its own (its (instance, seed)'s
step tree, its episode's trace), each atomically (temp file + rename), and the caller writes the
aggregate once every task is back; so two tasks never write one file, and a run killed at any point
leaves every file written before complete (at worst a hidden temp file of the task cut off). On a
multi-node cluster the memo folder and the output folder must be on a filesystem every node sees.

Both backends give each task the same torch thread count (``worker_threads(workers)``, set inside
the task as the pool's initializer does), so they compute bit-identical results and share one memo
namespace.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import multiprocessing as mp
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

from govgym.typed import ConfigError, check_choice

BACKENDS = ("local", "ray")
INSTALL = 'pip install "govgym[ray]"'
"""The command that installs the Ray extra (Ray core only)."""


@functools.cache
def ray_available() -> bool:
    """Whether Ray can be imported here (checked once, without importing it: importing Ray takes ~0.4 s)."""
    return importlib.util.find_spec("ray") is not None


def require_ray(field: str = "backend") -> None:
    """Raise ConfigError with the install command unless Ray is importable."""
    if not ray_available():
        raise ConfigError(
            f"{field}: 'ray' runs the tasks on Ray, which is not installed in this Python ({sys.executable}). "
            f"Install the extra with `{INSTALL}` (or `{sys.executable} -m {INSTALL}`), or use backend=local "
            "(the local process pool)."
        )


def check_backend(prefix: str, backend: Any, ray_address: Any) -> None:
    """Validate the ``backend`` / ``ray_address`` config keys (``prefix``: the command, '' for none)."""
    dot = f"{prefix}." if prefix else ""
    check_choice(f"{dot}backend", backend, BACKENDS)
    if not isinstance(ray_address, str):
        raise ConfigError(
            f"{dot}ray_address: got {ray_address!r}; expected a Ray address as text, e.g. ray_address=auto "
            "or ray_address=ray://HEAD:10001 ('' = start a local Ray)."
        )
    if ray_address.strip() != ray_address or any(c.isspace() for c in ray_address):
        raise ConfigError(
            f"{dot}ray_address: got {ray_address!r}, which holds whitespace; give the address alone, "
            "e.g. ray_address=auto or ray_address=ray://HEAD:10001."
        )
    if ray_address and backend != "ray":
        raise ConfigError(
            f"{dot}ray_address: got {ray_address!r} with backend={backend!r}, which would ignore it; "
            "add backend=ray to run on that cluster, or drop ray_address."
        )
    if backend == "ray":
        require_ray(f"{dot}backend")


def init_worker(threads: int) -> None:
    """Per worker process (pool initializer; inside each Ray task): torch threads, no library warnings."""
    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)


def _call(fn: Callable[[Any], Any], threads: int, task: Any) -> Any:
    """One Ray task: the pool initializer's settings, then the module-level task function."""
    init_worker(threads)
    return fn(task)


def _start_ray(workers: int, ray_address: str) -> bool:
    """Connect to ``ray_address`` or start a local Ray with ``workers`` CPUs; True if we started it.

    A Ray already initialized in this process (a notebook's, a test's) is used as it is and left running.
    """
    import ray

    if ray.is_initialized():
        return False
    # the tasks' processes read govgym's settings (GOVGYM_CACHE, ...) from their environment
    env = {k: v for k, v in os.environ.items() if k.startswith("GOVGYM_")}
    kwargs: dict[str, Any] = {
        "runtime_env": {"env_vars": env} if env else None,
        "log_to_driver": False,  # tasks print nothing useful; errors come back as exceptions
        "logging_level": logging.ERROR,
    }
    if not ray_address:
        ray.init(num_cpus=workers, include_dashboard=False, **kwargs)
        return True
    try:
        ray.init(address=ray_address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ConfigError(
            f"ray_address: could not connect to Ray at {ray_address!r} ({type(err).__name__}: {err}). "
            "Start a cluster with `ray start --head` and pass its address (ray_address=auto on a node of it, "
            "or ray_address=ray://HEAD:10001 from outside), or leave ray_address empty for a local Ray."
        ) from None
    return False


def _ray_results(
    fn: Callable[[Any], Any], tasks: list[Any], workers: int, threads: int, ray_address: str
) -> Iterator[Any]:
    require_ray()
    import ray

    started = _start_ray(workers, ray_address)
    pending: list[Any] = []
    try:
        remote = ray.remote(num_cpus=1)(_call)  # one core per task, as one pool worker
        pending = [remote.remote(fn, threads, t) for t in tasks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayTaskError as err:
                cause = getattr(err, "cause", None)  # the task's own exception (a ConfigError, ...)
                if isinstance(cause, BaseException):
                    raise cause from None
                raise
            yield result
    finally:
        for ref in pending:  # stopped early (an error, Ctrl-C): no task keeps running for nobody
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


def _local_results(fn: Callable[[Any], Any], tasks: list[Any], workers: int, threads: int) -> Iterator[Any]:
    if workers == 1:
        prev = torch.get_num_threads()
        init_worker(threads)
        try:
            for t in tasks:
                yield fn(t)
        finally:
            torch.set_num_threads(prev)
        return
    with mp.get_context("spawn").Pool(workers, initializer=init_worker, initargs=(threads,)) as pool:
        yield from pool.imap_unordered(fn, tasks)


def task_results(
    fn: Callable[[Any], Any],
    tasks: list[Any],
    workers: int,
    threads: int,
    backend: str = "local",
    ray_address: str = "",
) -> Iterator[Any]:
    """Run ``fn(task)`` for every task on ``backend``; yield each result as its task finishes.

    ``fn`` must be a module-level function (spawned workers and Ray import it by name); ``threads``:
    torch threads per task. Use as ``with contextlib.closing(task_results(...)) as it:`` so that an
    error in the caller stops the pool / cancels the Ray tasks and shuts down a Ray we started.
    """
    check_backend("", backend, ray_address)
    if backend == "ray":
        return _ray_results(fn, tasks, workers, threads, ray_address)
    return _local_results(fn, tasks, workers, threads)


__all__ = [
    "BACKENDS",
    "INSTALL",
    "check_backend",
    "init_worker",
    "ray_available",
    "require_ray",
    "task_results",
]
