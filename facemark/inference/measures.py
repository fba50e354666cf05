"""Eye and mouth measures, blinks: now :mod:`facemark.data.measures` (beside
:class:`facemark.data.face.Face`, which uses them). This path stays so that existing imports
keep working."""
from facemark.data.measures import (Blink, BlinkDetector, detect_blinks, ear_series,
                                    eye_aspect_ratio, mouth_aspect_ratio)

__all__ = ["Blink", "BlinkDetector", "detect_blinks", "ear_series", "eye_aspect_ratio",
           "mouth_aspect_ratio"]
