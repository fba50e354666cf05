"""facemark: facial landmark detection (PIPNet, SepBN), training, evaluation and inference.

>>> import facemark
>>> landmarker = facemark.load("model.pt")      # facemark.load() for the bundled model
>>> faces = landmarker.detect("photo.jpg")       # list[facemark.Face]

What people do with the landmarks next:

>>> chip = facemark.align("photo.jpg", faces[0])            # aligned chip (ArcFace 112 px)
>>> faces[0].pose.yaw, faces[0].pose.pitch, faces[0].pose.roll     # head pose, degrees
>>> faces[0].eye_aspect_ratio(), faces[0].mouth_aspect_ratio()
>>> facemark.detect_blinks(track_video(landmarker, VideoSource("clip.mp4")))

What ``facemark detect`` and ``facemark calibrate`` do, from Python:

>>> summary = facemark.detect_files(["photos/", "clip.mp4"], "out")   # OUT/predictions.json
>>> facemark.calibrate("model.pt", "300w:train/", test="300w:test/", output="calibrated.pt")

``load``, ``Landmarker``, ``Face`` and the rest are imported on first use, so
``import facemark`` (and ``facemark --help``) stays fast and does not import torch.

Layers: each module imports only its own layer and the ones below it (lowest first), and
no modules import each other in a cycle; tests/test_architecture.py checks both.

1. ``errors`` (the one-line user errors), then ``io`` (atomic writes) and ``configs``
   (the bundled YAML configs)
2. ``data`` (datasets, formats, landmark schemes, crops, the prediction file, ``Face``)
3. ``models`` (backbones, heads, the registry)
4. ``training`` and ``evaluation``
5. ``inference`` (detectors, the landmarker, export, outputs)
6. ``api`` (``facemark.load``)
7. ``cli`` and ``__main__`` (argument parsing)

This package module itself sits above them all (its names are lazy re-exports), and every
layer may read its ``__version__``.
"""
__version__ = "0.1.0"

__all__ = ["__version__", "load", "Landmarker", "Face", "align", "estimate_pose", "HeadPose",
           "eye_aspect_ratio", "mouth_aspect_ratio", "BlinkDetector", "detect_blinks",
           "detect_files", "BatchDetector", "calibrate"]

_LAZY = {"load": "facemark.api", "Landmarker": "facemark.inference.landmarker",
         "Face": "facemark.data.face", "align": "facemark.inference.align",
         "estimate_pose": "facemark.data.pose", "HeadPose": "facemark.data.pose",
         "eye_aspect_ratio": "facemark.data.measures",
         "mouth_aspect_ratio": "facemark.data.measures",
         "BlinkDetector": "facemark.data.measures",
         "detect_blinks": "facemark.data.measures",
         "detect_files": "facemark.inference.batch", "BatchDetector": "facemark.inference.batch",
         "calibrate": "facemark.inference.calibration"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'facemark' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + [n for n in _LAZY if n not in globals()])
