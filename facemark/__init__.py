"""facemark: facial landmark detection (PIPNet, SepBN), training, evaluation and inference."""
__version__ = "0.1.0"
