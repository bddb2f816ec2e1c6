"""How a scan runs its repo checks: a bounded thread pool on this machine, or tasks on a Ray cluster."""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Iterator


class ThreadExecutor:
    """Bounded concurrency on one machine: at most ``workers`` repos in flight, results as they finish."""

    def __init__(self, workers: int = 2) -> None:
        self.workers = max(1, workers)

    def map_unordered(self, fn: Callable[[Any, Any], Any], ctx: Any,
                      items: Iterable[Any]) -> Iterator[Any]:
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        it = iter(items)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="fpreg-scan") as pool:
            running = {pool.submit(fn, ctx, c) for c in _take(it, self.workers)}
            while running:  # refill as results come back: the listing is consumed lazily
                done, running = wait(running, return_when=FIRST_COMPLETED)
                running |= {pool.submit(fn, ctx, c) for c in _take(it, len(done))}
                yield from (f.result() for f in done)


class RayExecutor:
    """The same job on a Ray cluster (``pip install 'fp-registry[ray]'``; ``RAY_ADDRESS`` or a local instance)."""

    def __init__(self, workers: int = 2, env: dict[str, str] | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            from fp_registry.errors import MissingExtraError

            raise MissingExtraError("ray", "ray") from exc
        self.ray, self.workers = ray, max(1, workers)
        if not ray.is_initialized():
            ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": dict(env or {})})  # workers reach the same Hub, cache and token

    def map_unordered(self, fn: Callable[[Any, Any], Any], ctx: Any,
                      items: Iterable[Any]) -> Iterator[Any]:
        task = self.ray.remote(num_cpus=1)(fn)
        it = iter(items)
        running = [task.remote(ctx, c) for c in _take(it, self.workers)]
        while running:
            done, running = self.ray.wait(running, num_returns=1)
            running += [task.remote(ctx, c) for c in _take(it, len(done))]
            yield from self.ray.get(done)


def _take(it: Iterator[Any], n: int) -> list[Any]:
    out = []
    for item in it:
        out.append(item)
        if len(out) >= n:
            break
    return out


def make_executor(kind: str, workers: int, env: dict[str, str] | None = None) -> ThreadExecutor | RayExecutor:
    """``thread`` (default) or ``ray``; ``env``: variables Ray workers need (the driver's Hub endpoint and token)."""
    if kind == "ray":
        return RayExecutor(workers, env)
    if kind != "thread":
        from fp_registry.errors import UsageError

        raise UsageError(f"unknown executor {kind!r}", "use --executor thread or --executor ray")
    return ThreadExecutor(workers)
