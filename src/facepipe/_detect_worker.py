"""Preloaded by detect's fork server: the landmark model is read once there, and every
worker process forked from it shares that copy instead of loading its own 100 MB."""

from . import detect, faces  # noqa: F401  (detect: the workers' code, imported once here too)

faces.shape_predictor()
