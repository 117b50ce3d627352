"""The train stage's model folder: `weights.msgpack` (flax's msgpack of the parameters,
models.weights_bytes) and `model.json`:

    {"version": 1, "people": {"a": ..., "b": ...}, "preset": ..., "model": {ModelSettings},
     "coverage": 0.875, "crop_size": 256, "padding_fraction": ..., "recipe": ...,
     "precision": {"setting": "auto", "trained": "float32"},
     "started_from": null | {"model": ..., "parts": ..., "weights_sha256": ...},
     "steps": N, "parameters": N}

Beside them, for people: preview.png, loss.png, loss.csv, timelapse.mp4, metrics.json.

History: 1, the first versioned format (before it, the same without "version")."""

from __future__ import annotations

from pathlib import Path

from flax import nnx

from .. import devices
from ..errors import FacepipeError
from ..fsutil import write_bytes, write_json
from ..models import FaceSwapModel, ModelSettings, count_params, load_weights, weights_bytes
from . import read_versioned

VERSION = 1
INFO = "model.json"
WEIGHTS = "weights.msgpack"


def write(folder: Path, model: FaceSwapModel, info: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes(folder / WEIGHTS, weights_bytes(model))
    write_json(folder / INFO, {"version": VERSION, **info, "parameters": count_params(model)})


def read_info(model_dir: str | Path) -> dict:
    return read_versioned(Path(model_dir) / INFO, VERSION, "train")


def read_weights(model_dir: str | Path) -> bytes:
    path = Path(model_dir) / WEIGHTS
    if not path.is_file():
        raise FacepipeError(f"{model_dir}: no {WEIGHTS}; run the train stage first, or dvc pull it")
    return path.read_bytes()


def load(model_dir: str | Path, stage: str) -> tuple[FaceSwapModel, dict]:
    """A trained model and its model.json, computing at the precision it was trained
    with (`auto` resolved for this machine's devices, which `stage` logs)."""
    info = read_info(model_dir)
    precision = devices.announce(stage, info["precision"]["setting"])
    model = FaceSwapModel(ModelSettings.from_json(info["model"]), dtype=devices.DTYPES[precision], rngs=nnx.Rngs(0))
    try:
        load_weights(model, read_weights(model_dir))
    except ValueError as exc:
        raise FacepipeError(f"{model_dir}/{WEIGHTS}: {exc}; retrain the pair") from None
    return model, info
