"""The in-process executor: runs tasks one after another in submission order, with the runner's own adapters and
metrics (models load once, in this process). No per-task timeout: a hung adapter blocks the run (the `command`
adapter has its own `timeout` option); use `--executor ray` for timeouts and worker replacement."""
from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any, Iterator

from mheval.executors import Done, Pool, Task, error_text


class LocalExecutor:
    name = "local"

    def __init__(self):
        self.pools: dict[str, Pool] = {}
        self.queues: dict[int, deque[Task]] = {}

    def start(self, pools: list[Pool], run_dir: Path) -> None:
        self.pools = {pool.name: pool for pool in pools}

    def submit(self, task: Task) -> None:
        self.queues.setdefault(task.priority, deque()).append(task)

    def completed(self) -> Iterator[Done]:
        while any(self.queues.values()):
            task = self.queues[min(p for p, queue in self.queues.items() if queue)].popleft()
            try:
                value = task.function(self.pools[task.pool].state, *task.args, file=task.file)
            except Exception as err:  # a unit that raises is that unit's error; the run goes on
                yield Done(task, error=error_text(err))
                continue
            yield Done(task, value)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def close(self) -> None:
        self.queues.clear()
