"""Real Whisper base on puppet clips, end to end through the runner (no mocks).

Bounds: the puppet's English (Piper with the `piper` extra: 0.04 corpus WER on the suite's 8 items; espeak-ng
without it: 0.12) and German (espeak-ng: 0.32) through Whisper base; a wrong language token, a broken model folder
or misaligned audio all give ~1.0, so 0.2 (en) and 0.6 (de) separate working from broken with margin.
"""

import pytest

from mheval.results import RunResults, estimate
from mheval.runner import RunRequest, run
from mheval.metrics import metric_class

BOUNDS = {"en": 0.2, "de": 0.6}


@pytest.mark.slow
def test_whisper_wer_on_puppet_clips_in_english_and_german(tmp_path):
    outcome = run(RunRequest(suite="multilingual", models=["puppet"], out=tmp_path / "run", metrics=["wer"],
                             languages=list(BOUNDS), limit=3, progress=False))
    table = RunResults.from_store(outcome.store, outcome.record).clips
    assert (table["wer.status"] == "ok").all() and len(table) == 3 * len(BOUNDS)
    for language, bound in BOUNDS.items():
        rows = table[table.language == language]
        corpus = estimate(rows, metric_class("wer"))
        assert corpus.value <= bound, (language, corpus, list(rows["wer.detail"]))
        detail = rows["wer.detail"].iloc[0]
        assert detail.asr.sha256 and detail.normalizer and detail.language_used == language
