"""Time per metric on one 5-second 448x256 (256p) puppet clip, and non-ASR metrics together vs ASR (WER).

Each metric is timed after one warm-up call that also loads its model (the load is reported separately); each
decodes the frames it needs itself, streamed at its own analysis size, so its time includes that decoding. The
"decode" row is what is shared: probing the clip and decoding its audio once. CLIP metrics run a randomly
initialised ViT-B-32 saved to a temporary checkpoint: the same compute as the real weights, which cannot be had
offline. Metrics run in a run's order on the clip, so the second CLIP metric reuses the first one's frame
embeddings, as in a run. Wall and CPU time (all threads of this process) are both printed: the machine is shared.

    .venv/bin/python benchmarks/bench_metrics.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from mheval.adapters.puppet import PuppetAdapter
from mheval.media import ClipMedia
from mheval.metrics import ClipContext, create_metric
from mheval.suites import load_suite

NON_ASR = ("sync", "brisque", "technical", "clip_score", "clip_iqa", "speed", "identity", "speech_quality",
           "speaker_similarity")


def timed(call) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def random_clip_checkpoint(directory: Path) -> Path:
    import open_clip
    import torch

    torch.manual_seed(0)
    path = directory / "random_vit_b_32.pt"
    torch.save(open_clip.create_model("ViT-B-32").state_dict(), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    item = dataclasses.replace(load_suite("smoke").items[0], seconds=5.0)
    with tempfile.TemporaryDirectory() as tmp:
        clip_path = Path(tmp) / "clip.mp4"
        meta = PuppetAdapter(None).generate(item, clip_path, 0)
        meta["wall_seconds"] = sum(meta["timings"].values())
        media = ClipMedia(clip_path)
        decode = timed(lambda: (media.info, media.audio_16k))
        print(f"clip: {media.info.frame_count} frames at {media.fps:g} fps ({media.seconds:.2f} s), "
              f"{media.info.width}x{media.info.height}; repeats: {args.repeats} (median)")
        checkpoint = random_clip_checkpoint(Path(tmp))
        clip_options = {"pretrained": str(checkpoint)}
        context = ClipContext(media, item, "puppet", meta)
        metrics = [create_metric(name, **(clip_options if name.startswith("clip") else {}))
                   for name in (*NON_ASR, "wer")]
        loads = {metric.name: timed(lambda: metric.score(context)) for metric in metrics}
        runs = []
        for _ in range(args.repeats):  # in a run's order: the second CLIP metric reuses the frames' embeddings
            metrics[NON_ASR.index("clip_score")].backbone.forget_images()
            runs.append({metric.name: timed(lambda: metric.score(context)) for metric in metrics})
        rows = {"decode (shared)": (decode, (0.0, 0.0))}
        rows |= {name: (tuple(np.median([run[name] for run in runs], axis=0)), loads[name]) for name in loads}
    print(f"{'metric':<16} {'wall s':>8} {'CPU s':>8} {'first call (load) wall s':>26}")
    for name, ((wall, cpu), (load_wall, _)) in rows.items():
        print(f"{name:<16} {wall:>8.3f} {cpu:>8.3f} {load_wall:>26.3f}")
    non_asr = np.sum([rows[name][0] for name in NON_ASR], axis=0)
    asr = np.array(rows["wer"][0])
    print(f"non-ASR metrics together: wall {non_asr[0]:.3f} s, CPU {non_asr[1]:.3f} s; WER (ASR): wall {asr[0]:.3f} s,"
          f" CPU {asr[1]:.3f} s")
    print(f"non-ASR / ASR: wall {non_asr[0] / asr[0]:.2f}x, CPU {non_asr[1] / asr[1]:.2f}x (target < 1)")


if __name__ == "__main__":
    main()
