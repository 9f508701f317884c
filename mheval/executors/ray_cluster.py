"""The Ray executor: each pool (a model label, a metric group) runs as Ray actors that build their adapter or
metrics once and keep the model loaded; tasks go to whichever of a pool's actors is free, one at a time, so a
per-task clock measures the task and not its wait in a queue.

- Resources: every actor reserves its pool's `Resources` (num_cpus, num_gpus, memory); Ray places it on a node that
  has them. A pool's request must fit on one node of the cluster, checked before anything runs.
- Pipelining: scoring tasks are submitted by the runner as soon as a clip lands, so one model's clips are scored
  while another model still generates. When an actor cannot be placed for lack of resources, idle actors of pools
  with no queued work are stopped to make room (a small cluster then works through its pools in turn instead of
  deadlocking; a big one never needs to).
- Files: the driver writes a random token into the run directory. An actor that reads the same token at the same
  path shares the run directory (same machine, or shared storage mounted at the same path): it makes each clip in
  a scratch directory there and renames it into place, and reads clips in place. Any other actor works in a temporary directory: the clip it makes comes back as bytes and is
  written into the run directory by the driver, and a clip to score is sent to it as bytes. The runner checks every
  clip's sha256 on arrival and before scoring it.
- Threads: CPU numerics (BLAS, torch) depend on the number of threads. When the whole cluster is this machine, the
  workers compute with as many threads as a local run (this process's OMP_NUM_THREADS, else one per core), so their
  clips and scores are byte-identical to the local executor's. On a cluster of several machines Ray's rule holds:
  a worker computes with the CPUs it reserved.
- Failures: a task that raises is returned as that task's error. A worker process that dies is restarted by Ray
  and its task retried, at most `max_retries` times (`max_restarts` / `max_task_retries`), then reported as failed.
  A task running longer than `task_timeout` is reported as timed out; its actor is killed and replaced.

Why a small dispatcher of our own rather than `ray.util.ActorPool`: ActorPool has no per-task timeout, cannot tell
which task a timeout belongs to, and cannot replace a worker.
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import ray
from ray.exceptions import RayActorError, RayError

from mheval.executors import Done, ExecutorSettings, Pool, Task, error_text
from mheval.resources import Resources
from mheval.files import write_bytes_atomic

TOKEN_FILE = ".mheval-executor-token"
SCRATCH_DIR = ".mheval-scratch"     # in the run directory: where workers that share it make files
POLL_SECONDS = 0.5
PLACEMENT_GRACE_SECONDS = 3.0     # an actor not placed after this long may take the place of idle actors
GIB = 1 << 30


class RunWorker:
    """The Ray actor: holds one pool's state and runs that pool's tasks."""

    def __init__(self, build, identity, run_dir: str, token: str):
        self.state = build()
        self.identity = identity(self.state)
        token_file = Path(run_dir) / TOKEN_FILE
        self.shared = token_file.is_file() and token_file.read_text() == token
        self.scratch_root = Path(run_dir) / SCRATCH_DIR if self.shared else None

    def ready(self) -> dict[str, Any]:
        return {"host": socket.gethostname(), "pid": os.getpid(), "shared": self.shared, "identity": self.identity}

    def run(self, function, args: tuple, file: str, writes: bool, payload: bytes | None):
        """("ok", value, bytes of the written file when not shared) or ("raised", error text, None).

        A written file is made in a scratch directory of this attempt and only then moved to `file` (shared) or
        read back (not shared): a process the unit started that outlives a killed worker can never write into the
        file a retry produces."""
        try:
            if self.shared and not writes:
                return "ok", function(self.state, *args, file=Path(file)), None
            if self.scratch_root is not None:
                self.scratch_root.mkdir(exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="mheval-", dir=self.scratch_root) as scratch:
                path = Path(scratch) / Path(file).name
                if not writes:
                    path.write_bytes(payload)
                value = function(self.state, *args, file=path)
                if not writes or not path.exists():
                    return "ok", value, None
                if self.shared:
                    Path(file).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, file)
                    return "ok", value, None
                return "ok", value, path.read_bytes()
        except Exception as err:  # the unit's own error, returned so the driver records it against the unit
            return "raised", error_text(err), None


@dataclass
class _Actor:
    handle: Any
    created: float
    ready_ref: Any = None            # pending while Ray places and constructs the actor
    info: dict[str, Any] | None = None
    task: Task | None = None         # the task it runs now
    ref: Any = None
    started: float = 0.0


@dataclass
class _Group:
    pool: Pool
    queue: deque[Task] = field(default_factory=deque)
    actors: list[_Actor] = field(default_factory=list)
    broken: str | None = None        # why its workers cannot start; its tasks fail with this


class RayExecutor:
    name = "ray"

    def __init__(self, settings: ExecutorSettings):
        self.settings = settings
        self.groups: dict[str, _Group] = {}
        self.owns_instance = False
        self.run_dir: Path | None = None
        self.token = secrets.token_hex(16)
        self.worker_class = ray.remote(RunWorker)
        self.transfers: dict[str, str] = {}     # host -> "shared" | "bytes", as the actors found them

    # -- lifecycle --------------------------------------------------------------------------------------------------

    def start(self, pools: list[Pool], run_dir: Path) -> None:
        self._connect()
        self.run_dir = run_dir.resolve()
        write_bytes_atomic(self.run_dir / TOKEN_FILE, self.token.encode())
        for pool in pools:
            self._check_fits(pool)
            self.groups[pool.name] = _Group(pool)
        self.worker_threads = _local_run_threads() if _cluster_is_this_machine() else None
        self.identities = {pool.name: pool.identity(pool.state) for pool in pools}

    def _connect(self) -> None:
        if ray.is_initialized():
            return
        quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
        if self.settings.address:
            ray.init(address=self.settings.address, **quiet)
            return
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
        self.owns_instance = True
        node_ip = ray.util.get_node_ip_address()
        if not node_ip.startswith("127."):
            ray.shutdown()
            raise RuntimeError(f"the local Ray instance came up on {node_ip}, not on loopback: Ray was imported before "
                               f"mheval could ask for 127.0.0.1; set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 first")

    def _check_fits(self, pool: Pool) -> None:
        need = _ray_request(pool.resources)
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        if not any(_fits(need, node) for node in nodes):
            largest = {key: max(node.get(key, 0) for node in nodes) for key in need}
            raise ValueError(f"{pool.name} asks for {pool.resources.describe()} per worker, more than any node of "
                             f"the Ray cluster has (largest: {largest}); lower it with --ray-worker NAME.KEY=VALUE")

    def describe(self) -> dict[str, Any]:
        total = ray.cluster_resources()
        return {
            "name": self.name,
            "ray": ray.__version__,
            "address": ray.get_runtime_context().gcs_address,
            "local_instance": self.owns_instance,
            "nodes": sum(1 for node in ray.nodes() if node.get("Alive")),
            "cluster": {"cpus": total.get("CPU", 0), "gpus": total.get("GPU", 0),
                        "memory_gb": round(total.get("memory", 0) / GIB, 1)},
            "pools": {name: {"resources": group.pool.resources.__dict__, "replicas": group.pool.replicas}
                      for name, group in self.groups.items()},
            "worker_threads": self.worker_threads or "reserved CPUs",
            "task_timeout": self.settings.task_timeout,
            "max_retries": self.settings.max_retries,
        }

    def close(self) -> None:
        for group in self.groups.values():
            for actor in group.actors:
                ray.kill(actor.handle, no_restart=True)
            group.actors.clear()
        if self.run_dir is not None:
            (self.run_dir / TOKEN_FILE).unlink(missing_ok=True)
            shutil.rmtree(self.run_dir / SCRATCH_DIR, ignore_errors=True)  # what killed workers left behind
        if self.owns_instance:
            ray.shutdown()
            self.owns_instance = False

    # -- work -------------------------------------------------------------------------------------------------------

    def submit(self, task: Task) -> None:
        self.groups[task.pool].queue.append(task)

    def completed(self) -> Iterator[Done]:
        while True:
            yield from self._fail_broken()
            self._place()
            self._dispatch()
            waiting = {actor.ready_ref if actor.info is None else actor.ref: actor
                       for group in self.groups.values() for actor in group.actors
                       if actor.info is None or actor.task is not None}
            if not waiting:
                if any(group.queue for group in self.groups.values()):
                    continue  # a pool just lost its workers: _place makes new ones
                return
            finished, _ = ray.wait(list(waiting), num_returns=1, timeout=POLL_SECONDS)
            for ref in finished:
                actor = waiting[ref]
                if actor.info is None:
                    self._on_ready(actor)
                else:
                    yield self._on_result(actor)
            yield from self._expire()

    def _fail_broken(self) -> Iterator[Done]:
        for group in self.groups.values():
            while group.broken and group.queue:
                yield Done(group.queue.popleft(), error=group.broken)

    def _place(self) -> None:
        now = time.monotonic()
        for group in self.groups.values():
            if group.broken:
                continue
            busy = sum(actor.task is not None for actor in group.actors)
            wanted = min(group.pool.replicas, busy + len(group.queue))
            while len(group.actors) < wanted:
                group.actors.append(self._new_actor(group.pool, now))
        waiting = [_ray_request(group.pool.resources) for group in self.groups.values() for actor in group.actors
                   if actor.info is None and now - actor.created > PLACEMENT_GRACE_SECONDS]
        if waiting:
            available = ray.available_resources()
            if any(not _fits(request, available) for request in waiting):
                self._make_room()

    def _new_actor(self, pool: Pool, now: float) -> _Actor:
        request = _ray_request(pool.resources)
        options = {"num_cpus": request.get("CPU", 0), "num_gpus": request.get("GPU", 0),
                   "max_restarts": self.settings.max_retries, "max_task_retries": self.settings.max_retries}
        if "memory" in request:
            options["memory"] = request["memory"]
        if self.worker_threads:
            options["runtime_env"] = {"env_vars": {"OMP_NUM_THREADS": self.worker_threads}}
        handle = self.worker_class.options(**options).remote(pool.build, pool.identity, str(self.run_dir), self.token)
        return _Actor(handle, created=now, ready_ref=handle.ready.remote())

    def _make_room(self) -> None:
        """Stop the idle actors of pools that have nothing queued, so that actors waiting for resources can start."""
        for group in self.groups.values():
            if group.queue:
                continue
            for actor in [a for a in group.actors if a.info is not None and a.task is None]:
                ray.kill(actor.handle, no_restart=True)
                group.actors.remove(actor)

    def _dispatch(self) -> None:
        for group in self.groups.values():
            for actor in group.actors:
                if not group.queue:
                    break
                if actor.info is None or actor.task is not None:
                    continue
                task = group.queue.popleft()
                payload = None if actor.info["shared"] or task.writes else Path(task.file).read_bytes()
                actor.task, actor.started = task, time.monotonic()
                actor.ref = actor.handle.run.remote(task.function, task.args, str(Path(task.file).resolve()),
                                                    task.writes, payload)

    def _on_ready(self, actor: _Actor) -> None:
        group = next(g for g in self.groups.values() if actor in g.actors)
        try:
            info = ray.get(actor.ready_ref)
        except RayError as err:
            group.actors.remove(actor)
            group.broken = f"{group.pool.name}: its worker could not start: {_first_line(err)}"
            return
        expected = self.identities[group.pool.name]
        if info["identity"] != expected:
            raise RuntimeError(f"{group.pool.name}: the worker on {info['host']} builds it with identity "
                               f"{info['identity']}, this machine with {expected}: install the same mheval, options "
                               f"and weights on every node")
        actor.info, actor.ready_ref = info, None
        self.transfers[info["host"]] = "shared" if info["shared"] else "bytes"

    def _on_result(self, actor: _Actor) -> Done:
        group = next(g for g in self.groups.values() if actor in g.actors)
        task, ref = actor.task, actor.ref
        actor.task = actor.ref = None
        try:
            status, value, produced = ray.get(ref)
        except RayActorError as err:
            group.actors.remove(actor)
            return Done(task, error=f"worker died {self.settings.max_retries + 1} time(s) running this task "
                                    f"(restarted and retried {self.settings.max_retries}): {_first_line(err)}")
        except RayError as err:
            return Done(task, error=f"Ray could not run this task: {_first_line(err)}")
        if status == "raised":
            return Done(task, error=value)
        if produced is not None:
            write_bytes_atomic(Path(task.file), produced)
        return Done(task, value)

    def _expire(self) -> Iterator[Done]:
        now = time.monotonic()
        for group in self.groups.values():
            for actor in [a for a in group.actors if a.task is not None]:
                if now - actor.started > self.settings.task_timeout:
                    ray.kill(actor.handle, no_restart=True)
                    group.actors.remove(actor)
                    yield Done(actor.task, error=f"timed out after {self.settings.task_timeout:g} s; its worker was "
                                                 f"stopped and replaced")


def _ray_request(resources: Resources) -> dict[str, float]:
    request = {"CPU": resources.cpus}
    if resources.gpus:
        request["GPU"] = resources.gpus
    if resources.memory_gb:
        request["memory"] = resources.memory_gb * GIB
    return request


def _cluster_is_this_machine() -> bool:
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    return len(nodes) == 1 and nodes[0]["NodeManagerAddress"] in ("127.0.0.1", ray.util.get_node_ip_address())


def _local_run_threads() -> str:
    return os.environ.get("OMP_NUM_THREADS") or str(os.cpu_count())


def _fits(request: dict[str, float], resources: dict[str, float]) -> bool:
    return all(resources.get(key, 0) >= amount for key, amount in request.items())


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
