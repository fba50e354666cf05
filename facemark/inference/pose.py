"""Head pose from landmarks: now :mod:`facemark.data.pose` (beside :class:`facemark.data.face.Face`,
which uses it). This path stays so that existing imports keep working."""
from facemark.data.pose import (HeadPose, angles_from_rotation, estimate_pose, face_model_for,
                                guess_camera, rotation_from_angles)

__all__ = ["HeadPose", "angles_from_rotation", "estimate_pose", "face_model_for", "guess_camera",
           "rotation_from_angles"]
