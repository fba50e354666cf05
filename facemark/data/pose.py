"""Head pose from landmarks: yaw, pitch and roll in degrees, and the rotation and translation.

>>> face = facemark.load().detect("photo.jpg")[0]
>>> face.pose.yaw, face.pose.pitch, face.pose.roll           # degrees
>>> face.estimate_pose(camera_matrix=K)                       # your camera's intrinsics

The face's points are matched to a 3D mean face (``facemark.data.templates.MEAN_FACE_3D``,
millimetres; schemes without its 68 points use its 5-point version through their 5-point
conversion) and OpenCV's PnP (``cv2.solvePnP``, SQPnP, refined by Levenberg-Marquardt)
finds the rotation and translation of that face in front of a pinhole camera. Without
intrinsics the camera is guessed from the image size: focal length ``max(W, H)`` pixels
(about a 53 degree field of view across the longer side, a typical phone or webcam),
principal point at the image centre, no lens distortion.

Angles, for a face looking straight at the camera all 0 (the 3D face's frame is x to the
subject's left, y down, z into the head; the camera's is OpenCV's x right, y down, z
forward), with ``R = Rz(-roll) @ Ry(-yaw) @ Rx(-pitch)``:

* yaw: positive when the face turns towards the image's right (the subject's left);
* pitch: positive when the face tilts up (chin up);
* roll: positive when the face is rotated counter-clockwise in the image as shown.

A mirrored photo flips the signs of yaw and roll and keeps pitch; rotating a photo
counter-clockwise by an angle adds that angle to roll.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from facemark.data.convert import can_convert
from facemark.data.schemes import get_scheme
from facemark.data.templates import FACE_MODELS, FaceModel3D, points_for
from facemark.errors import ConfigError, FacemarkError


def guess_camera(width: int, height: int) -> np.ndarray:
    """A pinhole camera for an image of ``width`` x ``height`` pixels: (3, 3) float64
    intrinsics with focal length ``max(W, H)`` pixels and the principal point at the image
    centre ``((W - 1) / 2, (H - 1) / 2)`` (0-based pixel centres)."""
    if not (width > 0 and height > 0):
        raise ConfigError(f"image size: expected positive width and height, got {width} x {height}")
    f = float(max(width, height))
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def rotation_from_angles(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 3) camera-from-face rotation for angles in degrees (see the module docstring)."""
    a, b, c = np.radians([-roll, -yaw, -pitch])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[1, 0, 0], [0, np.cos(c), -np.sin(c)], [0, np.sin(c), np.cos(c)]])
    return rz @ ry @ rx


def angles_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a (3, 3) camera-from-face rotation; yaw in
    [-90, 90], pitch and roll in (-180, 180]."""
    r = np.asarray(rotation, dtype=np.float64)
    b = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))
    if abs(r[2, 0]) < 1.0 - 1e-9:
        a = np.arctan2(r[1, 0], r[0, 0])
        c = np.arctan2(r[2, 1], r[2, 2])
    else:                                    # gimbal lock: put it all in roll
        a = np.arctan2(-r[0, 1], r[1, 1])
        c = 0.0
    yaw, pitch, roll = -np.degrees(b), -np.degrees(c), -np.degrees(a)
    return float(yaw) + 0.0, float(pitch) + 0.0, float(roll) + 0.0


@dataclass
class HeadPose:
    """A face's head pose.

    Attributes:
        yaw, pitch, roll: degrees (module docstring: signs and order).
        rvec: float64 (3,) Rodrigues rotation vector (radians) of the camera-from-face
            rotation, as ``cv2.solvePnP`` gives it.
        tvec: float64 (3,) position of the 3D face's origin (the nose tip) in camera
            coordinates, millimetres (right, down, forward); as good as the 3D face's
            size and the camera's focal length.
        camera_matrix: float64 (3, 3) the intrinsics used (guessed or yours).
        dist_coeffs: float64 lens distortion used (zeros when guessed).
        error: root-mean-square reprojection error of the points used, pixels.
        model: name of the 3D face used.
    """

    yaw: float
    pitch: float
    roll: float
    rvec: np.ndarray
    tvec: np.ndarray
    camera_matrix: np.ndarray
    dist_coeffs: np.ndarray = field(default_factory=lambda: np.zeros(5))
    error: float = float("nan")
    model: str = ""

    @property
    def rotation(self) -> np.ndarray:
        """(3, 3) camera-from-face rotation matrix."""
        return cv2.Rodrigues(np.asarray(self.rvec, dtype=np.float64).reshape(3, 1))[0]

    def to_record(self) -> dict:
        """The pose fields of the prediction file format (docs/prediction-format.md)."""
        return {"yaw": float(self.yaw), "pitch": float(self.pitch), "roll": float(self.roll),
                "rvec": [float(v) for v in self.rvec], "tvec": [float(v) for v in self.tvec]}

    def project(self, points_3d: np.ndarray) -> np.ndarray:
        """(K, 2) image pixels of (K, 3) points in the 3D face's frame (mm)."""
        pts = np.asarray(points_3d, dtype=np.float64).reshape(-1, 1, 3)
        out, _ = cv2.projectPoints(pts, np.asarray(self.rvec, dtype=np.float64),
                                   np.asarray(self.tvec, dtype=np.float64),
                                   self.camera_matrix, self.dist_coeffs)
        return out.reshape(-1, 2)

    def __repr__(self) -> str:
        return (f"HeadPose(yaw={self.yaw:.1f}, pitch={self.pitch:.1f}, roll={self.roll:.1f} "
                f"deg, distance={float(np.linalg.norm(self.tvec)):.0f} mm)")


def face_model_for(scheme: str) -> FaceModel3D:
    """The 3D face for a scheme: the first of ``FACE_MODELS`` (68 points, then 5) whose
    scheme the face's points reach (the same scheme or a registered conversion)."""
    for model in FACE_MODELS:
        if can_convert(scheme, model.scheme):
            return model
    wanted = " or ".join(repr(m.scheme) for m in FACE_MODELS)
    raise FacemarkError(f"head pose needs the points of scheme {wanted}, or of a scheme with a "
                        f"conversion to one of them (facemark.data.convert); scheme "
                        f"{get_scheme(scheme).name!r} has none")


def estimate_pose(points: np.ndarray, scheme: str, *, image_size: tuple[int, int] | None = None,
                  camera_matrix: np.ndarray | None = None,
                  dist_coeffs: np.ndarray | None = None) -> HeadPose:
    """Head pose of one face from its landmarks.

    Args:
        points: (N, 2) landmark pixels in the order of ``scheme``.
        scheme: the points' scheme name (any scheme with the 68 points or a conversion to
            them, or to the 5-point ``face5``).
        image_size: (width, height) of the image in pixels, for the guessed camera.
        camera_matrix: (3, 3) intrinsics in pixels (fx, fy, cx, cy), overriding the guess.
        dist_coeffs: lens distortion coefficients as OpenCV takes them (None: none).

    Returns:
        a :class:`HeadPose`.

    Raises:
        FacemarkError: the scheme has none of the 3D face's points, the points used are not
            finite, or neither image size nor camera matrix was given.
    """
    model = face_model_for(scheme)
    pts, target = points_for(points, scheme, [model.scheme], "head pose")
    image_pts = pts[get_scheme(target).indices(model.pose_points)]
    if not np.isfinite(image_pts).all():
        raise FacemarkError("head pose needs finite points; the face has NaN among "
                            f"{', '.join(model.pose_points)}")
    if camera_matrix is None:
        if image_size is None:
            raise FacemarkError("head pose needs the camera: pass image_size=(width, height) "
                                "for the guessed camera, or camera_matrix=K")
        camera_matrix = guess_camera(*image_size)
    k = np.asarray(camera_matrix, dtype=np.float64)
    if k.shape != (3, 3) or not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ConfigError(f"camera_matrix: expected a (3, 3) intrinsics matrix with positive "
                          f"focal lengths, got {np.asarray(camera_matrix).tolist()!r:.120}")
    dist = np.zeros(5) if dist_coeffs is None else np.asarray(dist_coeffs, dtype=np.float64)
    obj = model.array()
    ok, rvec, tvec = cv2.solvePnP(obj, image_pts, k, dist, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        raise FacemarkError("head pose: cv2.solvePnP found no pose for these points")
    rvec, tvec = cv2.solvePnPRefineLM(obj, image_pts, k, dist, rvec, tvec)
    rvec, tvec = rvec.reshape(3), tvec.reshape(3)
    proj, _ = cv2.projectPoints(obj, rvec, tvec, k, dist)
    error = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - image_pts) ** 2, axis=1))))
    yaw, pitch, roll = angles_from_rotation(cv2.Rodrigues(rvec)[0])
    return HeadPose(yaw=yaw, pitch=pitch, roll=roll, rvec=rvec, tvec=tvec, camera_matrix=k,
                    dist_coeffs=dist, error=error, model=model.name)
