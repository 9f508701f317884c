"""Executors run the runner's units of work: one item × model → a clip, one clip × metric group → scores.

The runner (the driver) decides what is missing, builds `Task`s and stores every result: it is the only writer of
the run store, and cache keys never leave it. An executor only runs tasks and hands back `Done`s as they finish:

- `local` (default): in this process, in submission order, using the adapters and metrics the runner built.
- `ray`: on a Ray cluster (`--ray-address`, or a local instance on this machine's cores bound to 127.0.0.1). Each
  `Pool` — one per model label, one per metric group — becomes Ray actors that build the adapter or metrics once
  and keep the model loaded across tasks; see `mheval.executors.ray_cluster`.

A task may write one file (generation: the clip) or read one (scoring: the clip): `Task.file`, passed to the task's
function as `file=`. The executor makes that file appear where the function and the driver expect it.
"""
from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from mheval.metrics.options import parse_options
from mheval.resources import Resources

EXECUTORS = ("local", "ray")
DEFAULT_TASK_TIMEOUT = 3600.0
DEFAULT_MAX_RETRIES = 2
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


@dataclass
class Pool:
    """One kind of worker: the state it holds (an adapter, a list of metrics) and what one worker needs."""

    name: str                          # "generate:puppet", "score:sync+wer"
    build: Callable[[], Any]           # makes the state in a worker process (picklable: a module-level partial)
    state: Any                         # the same state, already made in this process (the local executor uses it)
    identity: Callable[[Any], str]     # the state's cache identity; a worker whose state differs is refused
    resources: Resources = field(default_factory=Resources)
    replicas: int = 1


@dataclass
class Task:
    pool: str
    function: Callable[..., Any]       # module-level: function(state, *args, file=path) -> a picklable result
    args: tuple
    tag: Any                           # the driver's own reference to this unit; never sent to a worker
    file: Path                         # the file the function writes (writes=True) or reads
    writes: bool = False
    priority: int = 0                  # the local executor runs lower numbers first (generation before scoring)


@dataclass
class Done:
    task: Task
    value: Any = None
    error: str | None = None           # the task raised, timed out, or its worker died more often than allowed


class Executor(Protocol):
    name: str

    def start(self, pools: list[Pool], run_dir: Path) -> None: ...

    def submit(self, task: Task) -> None: ...

    def completed(self) -> Iterator[Done]:
        """Run what was submitted and yield each task as it finishes, until nothing is pending; tasks submitted
        while iterating are run too."""
        ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


@dataclass
class WorkerOptions:
    """`--ray-worker NAME.KEY=VALUE`: what one worker of a model label or metric needs, and how many to run."""

    cpus: float | None = field(default=None, metadata={"help": "CPUs one worker reserves (default: as declared)"})
    gpus: float | None = field(default=None, metadata={"help": "GPUs one worker reserves (default: as declared)"})
    memory_gb: float | None = field(default=None, metadata={"help": "host memory GiB (default: as declared)"})
    replicas: int = field(default=1, metadata={"help": "workers side by side"})


@dataclass
class ExecutorSettings:
    name: str = "local"
    address: str | None = None                                  # Ray: None starts a local instance
    workers: dict[str, dict[str, str]] = field(default_factory=dict)  # label/metric -> WorkerOptions strings
    task_timeout: float = DEFAULT_TASK_TIMEOUT                  # Ray: seconds per task before its worker is replaced
    max_retries: int = DEFAULT_MAX_RETRIES                      # Ray: restarts of a worker that dies, per task

    def __post_init__(self):
        if self.name not in EXECUTORS:
            raise ValueError(f"unknown executor {self.name!r}; choose from {', '.join(EXECUTORS)}")
        if self.task_timeout <= 0 or self.max_retries < 0:
            raise ValueError("--task-timeout must be > 0 and --max-retries >= 0")

    def worker(self, name: str, declared: Resources) -> tuple[Resources, int]:
        """The resources and replica count of `name`'s workers: its declaration with the user's overrides."""
        options = parse_options(WorkerOptions, self.workers.get(name, {}))
        if options.replicas < 1:
            raise ValueError(f"--ray-worker {name}.replicas must be >= 1")
        changed = {f.name: getattr(options, f.name) for f in fields(Resources) if getattr(options, f.name) is not None}
        return replace(declared, **changed), options.replicas

    def check_names(self, names: set[str]) -> None:
        unknown = set(self.workers) - names
        if unknown:
            raise ValueError(f"--ray-worker for {', '.join(sorted(unknown))}: not a model label or metric of this run "
                             f"({', '.join(sorted(names))})")


def add_executor_arguments(parser) -> None:
    """The `mheval run` options that choose where units of work run."""
    group = parser.add_argument_group("where the work runs")
    group.add_argument("--executor", choices=EXECUTORS, default="local",
                       help="local: in this process (default); ray: on a Ray cluster, models loaded once per worker, "
                            "scoring while other models still generate")
    group.add_argument("--ray-address", default=None, metavar="ADDR",
                       help="an existing Ray cluster (host:port of its head, or 'auto'); default: start a local Ray "
                            "instance on this machine's cores, bound to 127.0.0.1, no dashboard")
    group.add_argument("--ray-worker", action="append", default=[], metavar="NAME.KEY=VALUE",
                       help="per model label or metric: cpus, gpus, memory_gb (GiB) one worker reserves, replicas "
                            "(workers side by side), e.g. magihuman.gpus=1 magihuman.replicas=8 wer.gpus=0.25")
    group.add_argument("--task-timeout", type=float, default=None, metavar="SECONDS",
                       help=f"Ray: a unit running longer is recorded as failed and its worker replaced "
                            f"(default {DEFAULT_TASK_TIMEOUT:g})")
    group.add_argument("--max-retries", type=int, default=None, metavar="N",
                       help=f"Ray: times a unit is retried when its worker process dies (default {DEFAULT_MAX_RETRIES})")


def executor_settings(args, workers: dict[str, dict[str, str]]) -> ExecutorSettings:
    """ExecutorSettings from `add_executor_arguments`' options (`workers`: the parsed --ray-worker pairs)."""
    ray_only = {"--ray-address": args.ray_address, "--ray-worker": workers or None,
                "--task-timeout": args.task_timeout, "--max-retries": args.max_retries}
    given = [flag for flag, value in ray_only.items() if value is not None]
    if args.executor != "ray" and given:
        raise ValueError(f"{', '.join(given)} need(s) --executor ray")
    return ExecutorSettings(args.executor, args.ray_address, workers,
                            DEFAULT_TASK_TIMEOUT if args.task_timeout is None else args.task_timeout,
                            DEFAULT_MAX_RETRIES if args.max_retries is None else args.max_retries)


def error_text(err: BaseException) -> str:
    """`Type: message` on the first line (what tables show), then where it was raised."""
    where = "".join(traceback.format_tb(err.__traceback__, limit=-3)).rstrip()
    return f"{type(err).__name__}: {err}" + (f"\n{where}" if where else "")


def create_executor(settings: ExecutorSettings) -> Executor:
    if settings.name == "local":
        from mheval.executors.local import LocalExecutor

        return LocalExecutor()
    if settings.address is None or settings.address.split(":")[0] in LOOPBACK_HOSTS:
        # Ray reads this when it is imported: this process then advertises and binds 127.0.0.1 only, as a local
        # instance it starts does (its processes inherit the variable).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        from mheval.executors.ray_cluster import RayExecutor
    except ImportError as err:
        raise ValueError(f"--executor ray needs Ray: pip install 'mheval[ray]' ({err})") from None
    return RayExecutor(settings)
