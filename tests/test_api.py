"""The Python API (issue 19 item 4): the README's example runs, `score` reuses loaded models, bad input is named."""
import importlib
import re
from pathlib import Path

import pytest

import mheval
from mheval import api
from mheval.adapters.puppet import PuppetAdapter
from mheval.status import Status
from mheval.suites import SuiteError, load_suite

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", text, re.S)
    assert found, "README.md has no ```python block after <!-- api-example -->"
    return found.group(1)


@pytest.mark.slow
def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md (api example)", "exec"), {})
    printed = capsys.readouterr().out
    assert "a_better" in printed   # the late puppet loses on sync
    assert (tmp_path / "runs" / "api-example" / "run.sqlite").is_file()


def test_the_public_names_are_typed_documented_and_lazy():
    assert set(mheval.__all__) == {"evaluate", "score", "compare", "RunResults", "Status"}
    for name in ("evaluate", "score", "compare"):
        function = getattr(mheval, name)
        assert function.__doc__ and function.__annotations__.get("return")
    assert mheval.Status.OK == "ok"
    importlib.import_module("mheval.report")   # loads the whole read path: no submodule may shadow a public name
    assert callable(mheval.compare) and callable(mheval.score) and callable(mheval.evaluate)
    with pytest.raises(AttributeError):
        mheval.nothing_here


def test_items_given_as_dicts_are_checked_like_a_suite_file(tmp_path):
    with pytest.raises(SuiteError, match="language"):
        mheval.evaluate([{"id": "x-1", "language": "xx", "prompt": "Hello."}], models=["puppet"], out=tmp_path)
    with pytest.raises(ValueError, match="valid options"):
        mheval.evaluate("smoke", models=["puppet"], limit=1, languages=["en"], out=tmp_path / "r",
                        model_options={"puppet": {"shfit_ms": 10}}, metrics=["technical"])


def test_score_takes_a_mapping_and_names_missing_files_and_unknown_items(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mheval.score({"en-kitchen-01": tmp_path / "nope.mp4"}, suite="smoke")
    clip = tmp_path / "clip.mp4"
    PuppetAdapter().generate(load_suite("smoke").item("en-kitchen-01"), clip, 0)
    with pytest.raises(ValueError, match="does not have"):
        mheval.score({"en-nothing": clip}, suite="smoke")
    results = mheval.score({"en-kitchen-01": clip}, suite="smoke", metrics=["technical"], model="step-1")
    assert results.models == ["step-1"] and results.clip("step-1", "en-kitchen-01").status == Status.OK
    assert results.clip("step-1", "en-kitchen-01").scores["technical"].status == Status.OK


@pytest.mark.slow
def test_score_twice_in_one_process_loads_whisper_once(tmp_path, monkeypatch):
    from mheval.asr import faster_whisper_engine, load_asr

    loads = []
    original = faster_whisper_engine.FasterWhisperASR.__init__

    def counting(self, *args, **kwargs):
        loads.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(faster_whisper_engine.FasterWhisperASR, "__init__", counting)
    load_asr.cache_clear()
    monkeypatch.setattr(api, "_METRICS", {})
    suite = load_suite("smoke")
    clips = {}
    for item_id in ("en-kitchen-01", "de-platform-01"):
        clips[item_id] = tmp_path / f"{item_id}.mp4"
        PuppetAdapter().generate(suite.item(item_id), clips[item_id], 0)
    first = mheval.score({"en-kitchen-01": clips["en-kitchen-01"]}, suite="smoke", metrics=["wer"])
    wer = next(metric for (name, _), metric in api._METRICS.items() if name == "wer")
    second = mheval.score({"de-platform-01": clips["de-platform-01"]}, suite="smoke", metrics=["wer"],
                          run_dir=tmp_path / "run")
    assert len(loads) == 1
    assert next(metric for (name, _), metric in api._METRICS.items() if name == "wer") is wer
    assert first.clips["wer.status"].tolist() == ["ok"] and second.clips["wer.status"].tolist() == ["ok"]
    # with a run directory the CLI's cache keys apply: the same clip again is not scored again (a metric asked to
    # score now would fail the clip)
    monkeypatch.setattr(wer, "score", lambda clip: 1 / 0)
    again = mheval.score({"de-platform-01": clips["de-platform-01"]}, suite="smoke", metrics=["wer"],
                         run_dir=tmp_path / "run")
    assert again.clips["wer.status"].tolist() == ["ok"]
    assert again.clips["wer.wer"].tolist() == second.clips["wer.wer"].tolist()
    assert len(again.run.metric_keys) == 1 and again.run.run_id == 2
