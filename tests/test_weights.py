"""Hub weights, fetched for real with huggingface_hub from a hub served on 127.0.0.1 (tests/hub_server.py), into a
fresh HF_HOME per test.

The CLIP metric here loads TINY RANDOM WEIGHTS made in the test and served under a test declaration (the real
declaration's pin is the real file's sha256, which a made-up file cannot have): the tests check fetching, pinning,
refusal and the offline paths, never what the scores mean.
"""
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from hub_server import FakeHub, HubRepo, closed_port_endpoint
from tiny_clip import save_tiny_clip
from mheval.media import ClipMedia
from mheval.metrics import ClipContext, create_metric
from mheval.metrics.clip_score import ClipMetric
from mheval.metrics.videoscore2 import VideoScore2
from mheval.suites import load_suite
from mheval.validate import ValidateConfig, Workspace
from mheval.weights import HubFile, HubWeights, WeightsPolicy, WeightsUnavailable, resolve

TINY = "mheval-tiny-random-clip-hub"
TINY_TAG = "tiny-random"
REPO = "mheval-test/tiny-random-clip"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FILE = "open_clip_model.pt"
ITEMS = load_suite("smoke").items


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> bytes:
    """Bytes of a randomly initialised tiny open_clip checkpoint (its config registered with open_clip)."""
    directory = tmp_path_factory.mktemp("clip-config")
    return save_tiny_clip(TINY, directory, directory / "tiny.pt").read_bytes()


@pytest.fixture
def environment(tmp_path, monkeypatch):
    """A fresh, online hub environment: HF_HOME and mheval's caches in tmp_path, no weights folder."""
    import huggingface_hub.constants
    from huggingface_hub.utils import _http

    # huggingface_hub retries an unreachable hub five times with backoff (~23 s); the retries happen, the waits not
    monkeypatch.setattr(_http, "time", SimpleNamespace(sleep=lambda seconds: None))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("MHEVAL_CACHE", str(tmp_path / "mheval-cache"))
    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "MHEVAL_OFFLINE", "MHEVAL_WEIGHTS_DIR", "MHEVAL_ALLOW_UNPINNED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return tmp_path


@pytest.fixture
def pinned_clip(tiny_clip, monkeypatch):
    """The CLIP metrics' hub declaration replaced by one for the tiny random checkpoint, pinned to its sha256."""
    declaration = HubWeights(REPO, COMMIT, (HubFile(FILE, hashlib.sha256(tiny_clip).hexdigest()),),
                             licence="test", provenance="tiny random weights made in the test")
    monkeypatch.setattr(ClipMetric, "hub_weights", declaration)
    monkeypatch.setattr(ClipMetric, "hub_model", (TINY, TINY_TAG))
    return declaration


@pytest.fixture
def hub(environment, monkeypatch, tiny_clip):
    with FakeHub({REPO: HubRepo(COMMIT, {FILE: tiny_clip})}) as served:
        monkeypatch.setenv("HF_ENDPOINT", served.endpoint)
        yield served


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    work = Workspace(tmp_path_factory.mktemp("clips"), ValidateConfig())
    return ClipContext(ClipMedia(work.puppet(ITEMS[0])), ITEMS[0], "puppet")


def clip_metric():
    return create_metric("clip_score", model=TINY, pretrained=TINY_TAG)


def snapshot_file(root: Path) -> Path:
    return root / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT / FILE


def test_a_good_fetch_is_checked_and_the_metric_scores_what_arrived(hub, pinned_clip, environment, clip):
    metric = clip_metric()
    assert metric.unavailable() is None
    fetched = snapshot_file(environment / "hf-home" / "hub")
    assert fetched.is_file()
    assert ("GET", f"/{REPO}/resolve/{COMMIT}/{FILE}") in hub.requests
    assert [weight.sha256 for weight in metric.weights()] == [pinned_clip.files[0].sha256]
    scores = metric.score(clip)
    assert -100 <= scores["clip_score"] <= 100
    requests = len(hub.requests)
    assert clip_metric().unavailable() is None    # a second run finds it in the cache: nothing requested
    assert len(hub.requests) == requests


def test_a_file_with_another_sha256_is_refused_and_deleted(hub, pinned_clip, environment):
    hub.repos[REPO].files[FILE] = b"not the pinned weights"
    reason = clip_metric().unavailable()
    served = hashlib.sha256(b"not the pinned weights").hexdigest()
    assert f"refused {REPO}@{COMMIT}/{FILE}" in reason
    assert f"sha256 {served}" in reason and f"expected {pinned_clip.files[0].sha256}" in reason
    assert "deleted" in reason
    blobs = environment / "hf-home" / "hub" / f"models--{REPO.replace('/', '--')}" / "blobs"
    assert not snapshot_file(environment / "hf-home" / "hub").exists()
    assert not any(blobs.iterdir())


def test_a_damaged_local_copy_is_fetched_again(hub, pinned_clip, environment, tiny_clip):
    assert clip_metric().unavailable() is None
    fetched = snapshot_file(environment / "hf-home" / "hub")
    fetched.resolve().write_bytes(b"damaged")
    assert clip_metric().unavailable() is None
    assert fetched.read_bytes() == tiny_clip


def test_a_server_that_is_down_makes_the_metric_unavailable_with_a_clear_message(
        environment, pinned_clip, monkeypatch):
    down = closed_port_endpoint()
    monkeypatch.setenv("HF_ENDPOINT", down)
    reason = clip_metric().unavailable()
    assert reason.startswith(f"CLIP weights {TINY}/{TINY_TAG}: could not fetch {REPO}@{COMMIT[:12]} ({FILE}) "
                             f"from {down}")
    assert "--metric-option clip_score.pretrained=" in reason


def test_a_run_goes_on_without_a_metric_whose_hub_is_down(environment, pinned_clip, monkeypatch, capsys):
    from mheval.cli import main

    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())
    monkeypatch.setenv("COLUMNS", "250")
    code = main(["run", "--suite", "smoke", "--limit", "1", "--languages", "en", "--out", str(environment / "run"),
                 "--metrics", "sync,clip_score", "--no-progress", "--metric-option", f"clip_score.model={TINY}",
                 "--metric-option", f"clip_score.pretrained={TINY_TAG}"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"clip_score: unavailable: CLIP weights {TINY}/{TINY_TAG}: could not fetch {REPO}" in out
    assert "sync →0" in out


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "MHEVAL_OFFLINE"])
def test_offline_requests_nothing_and_says_how_to_bring_the_weights(hub, pinned_clip, monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    reason = clip_metric().unavailable()
    assert hub.requests == []
    assert f"machine is offline ({variable}=1)" in reason and "mheval weights fetch DIR" in reason


def test_an_explicit_checkpoint_wins_and_needs_no_hub(environment, pinned_clip, tiny_clip, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())
    local = environment / "mine.pt"
    local.write_bytes(tiny_clip)
    metric = create_metric("clip_score", model=TINY, pretrained=str(local))
    assert metric.unavailable() is None and metric.weights()[0].path == str(local)


def test_weights_fetch_fills_a_folder_that_an_offline_run_then_uses(hub, pinned_clip, environment, clip,
                                                                     monkeypatch, capsys):
    from mheval.cli import main

    folder = environment / "air-gap"
    assert main(["weights", "fetch", str(folder), "--metrics", "clip_score"]) == 0
    assert snapshot_file(folder).is_file()
    assert not (environment / "hf-home" / "hub").exists()       # the folder, not the user's cache
    capsys.readouterr()
    hub.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MHEVAL_WEIGHTS_DIR", str(folder))
    metric = clip_metric()
    assert metric.unavailable() is None
    assert metric.score(clip)["clip_score"] == metric.score(clip)["clip_score"]
    assert main(["weights", "--json"]) == 0
    rows = {row["repo"]: row for row in json.loads(capsys.readouterr().out)["hub"]}
    assert rows[REPO]["location"] == str(snapshot_file(folder).parent)
    assert rows[REPO]["files"][0]["state"] == "ok"
    assert hub.requests == []


def test_run_options_offline_and_weights_dir_reach_the_metrics(hub, pinned_clip, environment, monkeypatch, capsys):
    from mheval.cli import main

    for name in ("MHEVAL_OFFLINE", "MHEVAL_WEIGHTS_DIR"):
        monkeypatch.setenv(name, "")  # restored after the test; `mheval run` sets them below
    folder = environment / "air-gap"
    resolve(pinned_clip, WeightsPolicy(weights_dir=folder, endpoint=hub.endpoint))
    hub.requests.clear()
    monkeypatch.setenv("COLUMNS", "250")
    code = main(["run", "--suite", "smoke", "--limit", "1", "--languages", "en", "--out", str(environment / "run"),
                 "--metrics", "clip_score", "--no-progress", "--offline", "--weights-dir", str(folder),
                 "--metric-option", f"clip_score.model={TINY}", "--metric-option", f"clip_score.pretrained={TINY_TAG}"])
    out = capsys.readouterr().out
    assert code == 0 and "unavailable" not in out and "clip_score ↑" in out
    assert hub.requests == []


def test_unpinned_weights_need_allow_unpinned_then_arrive_as_a_snapshot(environment, monkeypatch):
    files = {"config.json": b"{}", "model-00001-of-00001.safetensors": b"tiny random bytes, not a model",
             "tokenizer.json": b"{}", "notes.md": b"not matched by the patterns"}
    declaration = HubWeights("mheval-test/unpinned-judge", None, (HubFile("config.json"),), licence="test",
                             provenance="test", extra_patterns=("*.json", "*.safetensors"))
    monkeypatch.setattr(VideoScore2, "hub_weights", declaration)
    with FakeHub({declaration.repo: HubRepo(COMMIT, files)}) as served:
        monkeypatch.setenv("HF_ENDPOINT", served.endpoint)
        reason = create_metric("videoscore2").unavailable()
        assert "not fully pinned (no pinned revision; config.json has no pinned sha256" in reason
        assert "--allow-unpinned" in reason and served.requests == []
        monkeypatch.setenv("MHEVAL_ALLOW_UNPINNED", "1")
        metric = create_metric("videoscore2")
        assert metric.unavailable() is None
        assert ("GET", f"/api/models/{declaration.repo}/revision/main") in served.requests
    folder = metric.model_dir
    assert sorted(path.name for path in folder.iterdir()) == ["config.json", "model-00001-of-00001.safetensors",
                                                              "tokenizer.json"]
    assert [Path(weight.path).name for weight in metric.weights()] == ["model-00001-of-00001.safetensors"]


def test_the_real_declarations_are_listed_with_their_pins(environment, capsys, monkeypatch):
    from mheval.cli import main

    monkeypatch.setenv("MHEVAL_OFFLINE", "1")
    monkeypatch.setenv("COLUMNS", "160")
    assert main(["weights"]) == 0
    table = capsys.readouterr().out
    for repo in ("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "chunyu-li/LatentSync", "TIGER-Lab/VideoScore2",
                 "Systran/faster-whisper-large-v3"):
        assert repo in table
    assert "not fetched" in table and "used only with --allow-unpinned" in table
    assert main(["weights", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    rows = {row["repo"]: row for row in listing["hub"]}
    assert rows["laion/CLIP-ViT-B-32-laion2B-s34B-b79K"]["metrics"] == ["clip_iqa", "clip_score"]
    shipped = {row["metric"]: row for row in listing["shipped"]}
    from mheval.files import sha256_file
    assert shipped["wer"]["files"][0]["path"].startswith("pypi:")   # Whisper base, from its PyPI wheels
    for metric in ("sync", "identity", "brisque"):   # the package-shipped files, hashed as score keys hash them
        assert shipped[metric]["files"] and shipped[metric]["unavailable"] is None
        assert all(sha256_file(item["path"]) == item["sha256"] for item in shipped[metric]["files"])
    assert rows["Systran/faster-whisper-large-v3"]["pinned"] and rows["chunyu-li/LatentSync"]["pinned"]
    assert not rows["TIGER-Lab/VideoScore2"]["pinned"]
    assert all(row["location"] is None for row in rows.values())


def test_every_real_pin_is_a_commit_and_full_sha256_or_declared_missing():
    from mheval.weights_command import declared_weights

    for declared in declared_weights():
        weights = declared.weights
        assert weights.licence and weights.provenance
        for item in weights.files:
            assert item.sha256 is None or (len(item.sha256) == 64 and int(item.sha256, 16) >= 0)
        if weights.pinned:
            assert len(weights.revision) == 40


def test_whisper_large_v3_is_identified_by_its_pin_and_unavailable_offline(environment, monkeypatch):
    from mheval.asr import ASRSettings, asr_identity

    monkeypatch.setenv("MHEVAL_OFFLINE", "1")
    identity = asr_identity(ASRSettings(model="large-v3"))
    assert identity["sha256"] == "69f74147e3334731bc3a76048724833325d2ec74642fb52620eda87352e3d4f1"
    assert identity["path"] == "hf:Systran/faster-whisper-large-v3@edaa852ec7e145841d8ffdb056a99866b5f0a478/model.bin"
    reason = create_metric("wer", asr="large-v3").unavailable()
    assert reason.startswith("Whisper large-v3 weights: Systran/faster-whisper-large-v3@edaa852ec7e1 is not in")
    assert "offline" in reason


def test_syncnet_without_a_checkpoint_names_its_hub_copy(environment, monkeypatch):
    monkeypatch.setenv("MHEVAL_OFFLINE", "1")
    reason = create_metric("syncnet").unavailable()
    assert "chunyu-li/LatentSync@076ac7b2e5fd" in reason and "syncnet.checkpoint=" in reason


def test_resolve_reports_an_unknown_file_on_the_hub(hub):
    declaration = HubWeights(REPO, COMMIT, (HubFile("absent.bin", "0" * 64),), licence="test", provenance="test")
    with pytest.raises(WeightsUnavailable, match=r"could not fetch .* \(absent.bin\)"):
        resolve(declaration)
