"""The executor seam without Ray: progress output, executor options, the local executor, pools, clip checks."""
import io
import sys

import numpy as np
import pytest

from mheval.adapters.magihuman import MagiHumanAdapter
from mheval.executors import Done, ExecutorSettings, Pool, Task, executor_settings
from mheval.executors.local import LocalExecutor
from mheval.progress import LineProgress, progress_bar
from mheval.resources import Resources
from mheval.runner import RunRequest, build_adapters, build_metrics, build_pools, run


@pytest.fixture(autouse=True)
def cheap_metric(audio_level):
    """A cheap real metric (`audio-level-test`) so these tests need no Whisper, registered for each test only."""


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_log_progress_prints_at_most_one_line_per_interval_and_always_the_final_count():
    clock, out = FakeClock(), io.StringIO()
    bar = LineProgress("generate", 1000, "clip", interval=5.0, file=out, clock=clock)
    for _ in range(1000):  # 1000 units over 20 s
        clock.now += 0.02
        bar.update()
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) <= 20 / 5 + 2
    assert lines[0].startswith("generate: 0/1000") and lines[-1].startswith("generate: 1000/1000 clip (100%)")
    assert "\r" not in out.getvalue()


def test_progress_bar_is_tqdm_in_a_terminal_and_lines_in_a_log():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert not isinstance(progress_bar("x", 3, "clip", file=Terminal()), LineProgress)
    assert isinstance(progress_bar("x", 3, "clip", file=io.StringIO()), LineProgress)
    assert progress_bar("x", 3, "clip", enabled=False, file=io.StringIO()).disable


def test_run_with_stderr_not_a_terminal_writes_a_few_progress_lines(tmp_path, capfd):
    run(RunRequest(suite="smoke", models=["puppet"], out=tmp_path / "r", metrics=["audio-level-test"], progress=True,
                   progress_interval=3600))
    lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith(("generate:", "score:"))]
    assert len(lines) == 4  # per bar: the first line and the final count
    assert "generate: 4/4 clip (100%)" in lines[-2] + lines[-1] and "score: 4/4 clip (100%)" in lines[-2] + lines[-1]


def _args(**given):
    from argparse import Namespace

    fields = dict(executor="local", ray_address=None, task_timeout=None, max_retries=None)
    fields.update(given)
    return Namespace(**fields)


def test_ray_options_without_the_ray_executor_are_an_error():
    with pytest.raises(ValueError, match="--ray-address, --task-timeout need"):
        executor_settings(_args(ray_address="127.0.0.1:6379", task_timeout=5.0), {})
    with pytest.raises(ValueError, match="--ray-worker need"):
        executor_settings(_args(), {"wer": {"gpus": "1"}})
    assert executor_settings(_args(executor="ray", task_timeout=5.0), {}).task_timeout == 5.0


def test_worker_overrides_are_typed_and_checked():
    settings = ExecutorSettings("ray", workers={"wer": {"gpus": "0.5", "replicas": "3"}, "typo": {"cpus": "1"}})
    assert settings.worker("wer", Resources(cpus=2)) == (Resources(cpus=2, gpus=0.5), 3)
    assert settings.worker("sync", Resources()) == (Resources(), 1)
    with pytest.raises(ValueError, match="typo"):
        settings.check_names({"wer", "sync"})
    with pytest.raises(ValueError, match="unknown option"):
        ExecutorSettings("ray", workers={"wer": {"gpu": "1"}}).worker("wer", Resources())


def _pools(models, metrics, workers=None):
    request = RunRequest(suite="smoke", models=models, metrics=metrics,
                         executor=ExecutorSettings("ray", workers=workers or {}))
    adapters = build_adapters(request.models, {})
    return build_pools(request, adapters, build_metrics(metrics, {}))


def test_metrics_share_a_worker_unless_their_group_or_resources_differ():
    pools, metric_pools = _pools(["puppet", "late=puppet"], ["wer", "sync", "technical"])
    assert [pool.name for pool in pools] == ["generate:puppet", "generate:late", "score:wer+sync+technical"]
    pools, metric_pools = _pools(["puppet"], ["wer", "sync", "technical"], {"wer": {"gpus": "1", "replicas": "2"}})
    assert metric_pools == {"wer": "score:wer", "sync": "score:sync+technical", "technical": "score:sync+technical"}
    wer = next(pool for pool in pools if pool.name == "score:wer")
    assert (wer.resources.gpus, wer.replicas) == (1, 2)
    assert wer.build()[0].config_hash() == wer.state[0].config_hash()  # what a worker builds is what the driver keys


def test_bundled_generator_asks_for_a_gpu_with_weights_and_for_a_local_run_s_cores_without():
    import torch

    assert MagiHumanAdapter().resources == Resources(cpus=torch.get_num_threads())
    assert MagiHumanAdapter(device="cuda").resources.gpus == 1
    assert MagiHumanAdapter(checkpoints="/weights").resources.gpus == 1
    assert MagiHumanAdapter(checkpoints="/weights", device="cpu").resources.gpus == 0


def _fail(state, *, file):
    raise RuntimeError(f"cannot make {file.name}")


def _record(state, value, *, file):
    state.append(value)
    return value


def test_local_executor_runs_generation_first_and_returns_a_raising_task_as_its_error(tmp_path):
    ran = []
    executor = LocalExecutor()
    executor.start([Pool("p", build=list, state=ran, identity=repr)], tmp_path)
    executor.submit(Task("p", _record, ("score",), "a", tmp_path / "a", priority=1))
    executor.submit(Task("p", _fail, (), "b", tmp_path / "b.mp4"))
    executor.submit(Task("p", _record, ("generate",), "c", tmp_path / "c"))
    done: list[Done] = list(executor.completed())
    assert [d.task.tag for d in done] == ["b", "c", "a"] and ran == ["generate", "score"]
    assert done[0].error.splitlines()[0] == "RuntimeError: cannot make b.mp4"


def test_a_clip_changed_on_disk_is_not_scored(tmp_path, smoke_suite):
    first = run(RunRequest(suite="smoke", models=["puppet"], out=tmp_path / "r", metrics=["audio-level-test"],
                           progress=False, limit=1, languages=["en"]))
    clip = first.store.directory / first.store.clips().path[0]
    clip.write_bytes(clip.read_bytes() + b"\0")
    second = run(RunRequest(suite="smoke", models=["puppet"], out=tmp_path / "r", metrics=["audio-level-test", "technical"],
                            progress=False, limit=1, languages=["en"]))
    scores = second.store.scores().set_index("metric")
    assert scores.loc["technical", "status"] == "failed" and "sha256" in scores.loc["technical", "detail"]
    assert second.generated == 0
