"""Real Whisper base on puppet clips, end to end through the runner (no mocks).

Bounds: espeak-ng English through Whisper base measured 0.03-0.07 corpus WER and German 0.21-0.44 on our
sentences (see tests/test_asr.py and spec/environment.md); a wrong language token, a broken model folder
conversion or misaligned audio all give ~1.0, so 0.2 (en) and 0.6 (de) separate working from broken with margin.
"""
import json

import pytest

from mheval.results import clip_table, estimate
from mheval.runner import RunRequest, run
from mheval.metrics import metric_class

BOUNDS = {"en": 0.2, "de": 0.6}


@pytest.mark.slow
def test_whisper_wer_on_puppet_clips_in_english_and_german(tmp_path):
    outcome = run(RunRequest(suite="multilingual", models=["puppet"], out=tmp_path / "run", metrics=["wer"],
                             languages=list(BOUNDS), limit=3, progress=False))
    table = clip_table(outcome.store, "multilingual", ["puppet"])
    assert (table["wer.status"] == "ok").all() and len(table) == 3 * len(BOUNDS)
    for language, bound in BOUNDS.items():
        rows = table[table.language == language]
        corpus = estimate(rows, metric_class("wer"))
        assert corpus.value <= bound, (language, corpus, list(rows["wer.detail"]))
        detail = json.loads(rows["wer.detail"].iloc[0])
        assert detail["asr"]["sha256"] and detail["normalizer"] and detail["language_used"] == language
