"""`mheval run --executor ray` on a local Ray instance with 2 CPUs bound to 127.0.0.1, started by these tests.

Same clips and scores as the local executor; a killed worker is restarted and its clip retried; a hung task is timed
out and recorded; a killed driver resumes. Needs the `ray` extra (.ci/run installs it)."""
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mheval.executors import ExecutorSettings
from mheval.runner import RunRequest, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_address():
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read when Ray is imported: bind 127.0.0.1 only
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    address = ray.get_runtime_context().gcs_address
    assert address.startswith("127.0.0.1:")
    yield address
    ray.shutdown()


def _store(directory: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    with sqlite3.connect(directory / "run.sqlite") as connection:
        return tuple(pd.read_sql_query(f"SELECT * FROM {table}", connection) for table in ("clips", "scores", "errors"))


def _cli(out: Path, *arguments: str) -> list[str]:
    return [sys.executable, "-m", "mheval.cli", "run", "--suite", "smoke", "--out", str(out), "--no-progress",
            *arguments]


def test_ray_run_stores_the_same_clips_and_scores_as_a_local_run(tmp_path, ray_address):
    from mheval.metrics import metric_class, metric_names

    models = ["puppet", "magihuman"]
    # every metric mheval ships (a plug-in another test loaded in this process would be missing on Ray workers)
    metrics = [name for name in metric_names() if metric_class(name).__module__.startswith("mheval.metrics.")]
    local = run(RunRequest(suite="smoke", models=models, metrics=metrics, out=tmp_path / "local", progress=False))
    on_ray = run(RunRequest(suite="smoke", models=models, metrics=metrics, out=tmp_path / "ray", progress=False,
                            executor=ExecutorSettings("ray", address=ray_address)))
    local_clips, local_scores, _ = _store(tmp_path / "local")
    ray_clips, ray_scores, ray_errors = _store(tmp_path / "ray")
    columns = ["model", "item_id", "status", "sha256", "path"]
    assert len(ray_clips) == 8 and (ray_clips.status == "ok").all() and ray_errors.empty
    pd.testing.assert_frame_equal(local_clips[columns], ray_clips[columns])
    key = ["clip_sha256", "metric", "metric_version", "config_hash"]
    local_scores, ray_scores = (frame.sort_values(key).reset_index(drop=True) for frame in (local_scores, ray_scores))
    assert set(ray_scores.metric) == {m.name for m in on_ray.metrics} - set(on_ray.unavailable)
    pd.testing.assert_frame_equal(local_scores[key + ["status"]], ray_scores[key + ["status"]])
    timed = ray_scores.metric == "speed"  # generation wall time: differs between any two runs
    pd.testing.assert_frame_equal(local_scores.loc[~timed, ["fields", "detail"]],
                                  ray_scores.loc[~timed, ["fields", "detail"]])
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())["executor"]
    assert manifest["name"] == "ray" and manifest["cluster"]["cpus"] == 2
    assert manifest["pools"]["generate:magihuman"]["resources"]["cpus"] >= 1
    assert local.store.manifest()["executor"] == {"name": "local"}


def _generator(tmp_path: Path) -> Path:
    script = tmp_path / "gen.py"
    script.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from mheval.adapters.puppet import PuppetAdapter\n"
        "from mheval.suites import load_suite\n"
        "PuppetAdapter().generate(load_suite('smoke').item(sys.argv[2]), Path(sys.argv[1]), int(sys.argv[3]))\n"
    )
    return script


def _wait_for(predicate, seconds: float, what: str):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"waited {seconds} s for {what}")


def test_a_killed_worker_is_restarted_and_its_clip_retried(tmp_path, ray_address):
    pids = tmp_path / "worker-pids"
    # `$PPID` of the command's shell is the Ray worker process that runs the unit; it reports it, then takes a
    # moment so that the kill lands while the unit runs.
    template = (f"echo $PPID >> {pids}; sleep 2; "
                f"{sys.executable} {_generator(tmp_path)} {{output}} {{id}} {{seed}}")
    out = tmp_path / "run"
    driver = subprocess.Popen(_cli(out, "--models", f"slow=command:{template}", "--metrics", "technical",
                                   "--executor", "ray", "--ray-address", ray_address),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first_worker = int(_wait_for(lambda: pids.exists() and pids.read_text().split(), 120, "a worker")[0])
    os.kill(first_worker, signal.SIGKILL)
    _, stderr = driver.communicate(timeout=600)
    assert driver.returncode == 0, stderr
    clips, scores, errors = _store(out)
    assert sorted(clips.item_id) == sorted(clips.item_id.unique()) and len(clips) == 4
    assert (clips.status == "ok").all() and errors.empty
    assert len(scores) == 4 and set(scores.status) == {"ok"}
    assert sorted(p.name for p in (out / "clips" / "slow").iterdir()) == sorted(f"{i}-s42.mp4" for i in clips.item_id)
    workers = [int(pid) for pid in pids.read_text().split()]
    assert len(workers) == 5 and len(set(workers)) == 2  # the killed unit ran again, on a restarted worker


def test_a_hung_task_is_timed_out_and_recorded_and_the_run_goes_on(tmp_path, ray_address):
    hang_pid = tmp_path / "hang.pid"
    template = (f"if [ {{id}} = en-kitchen-01 ]; then echo $$ > {hang_pid}; exec sleep 120; fi; "
                f"{sys.executable} {_generator(tmp_path)} {{output}} {{id}} {{seed}}")
    out = tmp_path / "run"
    try:
        result = subprocess.run(_cli(out, "--models", f"hang=command:{template}", "--metrics", "technical",
                                     "--executor", "ray", "--ray-address", ray_address, "--task-timeout", "15"),
                                capture_output=True, text=True, timeout=600)
    finally:
        if hang_pid.exists():  # the sleeping command outlives its killed worker; end it by its id
            try:
                os.kill(int(hang_pid.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert result.returncode == 3, result.stderr
    clips, scores, errors = _store(out)
    hung = clips.set_index("item_id").loc["en-kitchen-01"]
    assert hung.status == "failed" and "timed out after 15 s" in hung.error
    assert (clips.status == "ok").sum() == 3 and len(scores) == 3
    assert list(errors.stage) == ["generate"] and "timed out" in result.stdout
    assert not list(out.glob("clips/*/.*partial*"))


def test_a_killed_driver_resumes_without_recomputing_finished_work(tmp_path, ray_address, smoke_suite):
    out = tmp_path / "run"
    command = _cli(out, "--models", "puppet", "--metrics", "wer", "--executor", "ray", "--ray-address", ray_address)
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = out / "run.sqlite"

    def scored():
        if not db.exists():
            return 0
        with sqlite3.connect(db) as connection:
            return connection.execute("SELECT COUNT(*) FROM scores").fetchone()[0]

    _wait_for(scored, 600, "a first score")
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    clips_before, scores_before, _ = _store(out)
    assert 1 <= len(scores_before) < len(smoke_suite.items), "the kill should land mid-way through scoring"
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
    clips, scores, _ = _store(out)
    assert sorted(clips.item_id) == sorted(item.id for item in smoke_suite.items) and (clips.status == "ok").all()
    assert len(scores) == len(smoke_suite.items) and set(scores.status) == {"ok"}
    finished = clips_before[clips_before.status == "ok"].set_index("item_id").created
    assert (clips.set_index("item_id").created[finished.index] == finished).all()  # not regenerated
    again = run(RunRequest(suite="smoke", models=["puppet"], metrics=["wer"], out=out, progress=False))
    assert again.generated == 0 and again.scored == 0  # the local executor finds the same keys
