"""Preloaded by detect's fork server: the landmark model is read once there, and every
worker process forked from it shares that copy instead of loading its own 100 MB."""

from . import detect, faces

faces.shape_predictor()

__all__ = ["detect"]
