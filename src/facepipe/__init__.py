"""facepipe: reproducible DeepFakes-style face swapping."""

__version__ = "0.1.0"
