"""clcc: semi-supervised medical image segmentation (CLCC, ISBI 2022, and its baselines)."""

__version__ = "0.1.0"
