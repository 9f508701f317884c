"""VideoScore2 judge: parsing, frame sampling, soft scores, and a run end to end with a TINY RANDOMLY INITIALISED
model of its architecture (tests/tiny_videoscore2.py; no VideoScore2 weights can be had offline, so that run's
output is noise and is expected to be recorded as a parse failure).

The judge outputs below are written in the two forms the released model is documented to produce (the model card's
"visual quality: N;" lines, and a <think> block followed by a numbered list), plus malformed variants."""
import json

import numpy as np
import pytest
import torch

from mheval.cli import main
from mheval.metrics import create_metric
from mheval.metrics.videoscore2 import (JudgeParseFailure, judge_frames, parse_judge_output, sample_frame_indices,
                                        scores_from_output, soft_score)
from tests.tiny_videoscore2 import build_tiny_videoscore2, tiny_tokenizer

CARD_FORMAT = "visual quality: 4;\ntext-to-video alignment: 3,\nphysical/common-sense consistency: 5"
THINKING = ("<think>The first frames look sharp, so visual quality: 5 at first, but the hands blur later. "
            "Text-to-video alignment: 2 would be harsh.</think>\n"
            "(1) visual quality \u2013 clarity, smoothness, artifacts: 3\n"
            "(2) text-to-video alignment \u2013 fidelity to the prompt: 4\n"
            "(3) physical/common-sense consistency \u2013 naturalness and physics plausibility: 2")


@pytest.mark.parametrize("text, expected", [
    (CARD_FORMAT, {"visual_quality": 4, "text_alignment": 3, "physical_consistency": 5}),
    (THINKING, {"visual_quality": 3, "text_alignment": 4, "physical_consistency": 2}),   # the thinking is skipped
    ("Visual Quality: **4**\nText-to-Video Alignment: 4\nPhysical/Common-sense Consistency: 1",
     {"visual_quality": 4, "text_alignment": 4, "physical_consistency": 1}),
])
def test_parser_reads_both_output_forms(text, expected):
    assert parse_judge_output(text).scores == expected


@pytest.mark.parametrize("text, problem", [
    ("visual quality: 4;\ntext-to-video alignment: 3,", "no physical/common-sense consistency score"),
    ("visual quality: 7;\ntext-to-video alignment: 3,\nphysical/common-sense consistency: 5",
     "visual quality score '7' is not a whole number 1-5"),
    ("visual quality: 4.5;\ntext-to-video alignment: 3,\nphysical/common-sense consistency: 5",
     "visual quality score '4.5'"),
    ("", "no visual quality score"),
    ("<think>visual quality: 4; text-to-video alignment: 3, physical/common-sense consistency: 5</think> Sorry.",
     "no visual quality score"),
    ("v\u00fdq\x13)cyAity", "no visual quality score; no text-to-video alignment score"),
])
def test_malformed_outputs_are_parse_failures_with_the_output(text, problem):
    with pytest.raises(JudgeParseFailure, match="parse failure") as failure:
        parse_judge_output(text)
    assert problem in str(failure.value)


def test_frames_are_sampled_and_sized_as_qwen_vl_utils_does():
    assert len(sample_frame_indices(125, 25.0, 2.0)) == 10          # 5 s at 2 fps
    assert list(sample_frame_indices(24, 24.0, 2.0)) == [0, 8, 15, 23]  # at least 4 frames
    assert len(sample_frame_indices(121, 24.0, 2.0)) == 10           # 5.04 s → 10.08 → 10
    frames = np.random.default_rng(0).integers(0, 255, (125, 256, 448, 3), dtype=np.uint8)
    sampled = judge_frames(frames[sample_frame_indices(125, 25.0, 2.0)])
    assert sampled.shape == (10, 252, 448, 3) and sampled.dtype == np.uint8


def test_soft_score_is_the_probability_weighted_mean_of_the_score_tokens():
    digit_ids = [10, 11, 12, 13, 14]
    logits = torch.full((50,), -1e9)
    logits[[12, 13]] = 0.0                     # half 3, half 4
    logits[40] = 5.0                           # mass on a non-score token is renormalised away
    value, probabilities = soft_score(logits, digit_ids)
    assert value == pytest.approx(3.5) and probabilities == [0.0, 0.0, 0.5, 0.5, 0.0]


def test_soft_scores_come_from_the_step_that_wrote_each_digit():
    tokenizer = tiny_tokenizer()
    digit_ids = [tokenizer.encode(str(s), add_special_tokens=False)[0] for s in range(1, 6)]
    generated = tokenizer.encode(THINKING, add_special_tokens=False)
    steps = [torch.zeros(1, len(tokenizer)) for _ in generated]   # uniform over the five digits by default
    threes = [i for i, token in enumerate(generated) if token == digit_ids[2]]
    visual_at = threes[-2]                     # "…artifacts: 3"; the last "3" is the list number "(3)"
    steps[visual_at][0, digit_ids[2]] = 2.0
    result = scores_from_output(tokenizer, digit_ids, THINKING, generated, steps)
    assert (result["visual_quality"], result["text_alignment"], result["physical_consistency"]) == (3, 4, 2)
    assert result["text_alignment_soft"] == pytest.approx(3.0)   # uniform: the mean of 1..5
    expected = np.exp(2.0) / (np.exp(2.0) + 4)  # p("3") at the visual score's step
    assert result["detail"]["score_probabilities"]["visual_quality"][2] == pytest.approx(expected, abs=1e-5)
    assert result["visual_quality_soft"] == pytest.approx(3 * expected + (1 + 2 + 4 + 5) * (1 - expected) / 4)
    assert result["detail"]["raw_output"] == THINKING


def test_unavailable_without_a_model_directory(tmp_path):
    assert "videoscore2.model_dir=/path/to/VideoScore2" in create_metric("videoscore2").unavailable()
    assert "no config.json" in create_metric("videoscore2", model_dir=str(tmp_path)).unavailable()


@pytest.mark.slow
def test_run_end_to_end_with_a_tiny_random_judge_records_its_noise_as_a_parse_failure(tmp_path, capsys):
    model_dir = build_tiny_videoscore2(tmp_path / "tiny-random-videoscore2")
    out = tmp_path / "run"
    code = main(["run", "--suite", "smoke", "--limit", "1", "--languages", "en", "--models", "puppet",
                 "--metrics", "videoscore2", "--metric-option", f"videoscore2.model_dir={model_dir}",
                 "--metric-option", "videoscore2.max_new_tokens=12", "--out", str(out), "--no-progress"])
    assert code == 0
    clip = json.loads((out / "exports" / "results.json").read_text())["clips"][0]
    assert clip["videoscore2.status"] == "not_applicable"
    assert "judge output parse failure (no visual quality score" in clip["videoscore2.detail"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["metrics"]["videoscore2"]["config"]["decoding"] == "greedy"
    assert manifest["metrics"]["videoscore2"]["weights"][0]["path"].endswith("model.safetensors")
    assert "judge parse failures" in capsys.readouterr().out
