"""train: fit one shared encoder and a decoder per person on their aligned faces.

MAE loss (or SSIM + MSE) on warped inputs, optax Adam(b1=0.5, b2=0.999) as the original; orbax
checkpoints every `train.save_every` steps (and on Ctrl-C) so a rerun resumes; writes
the weights (msgpack), the settings that shaped them, a preview grid, a timelapse of the
preview grids (every `train.preview_every` steps), the loss history (a DVC plot) and
final metrics."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import time
from fractions import Fraction
from pathlib import Path

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from tqdm import tqdm

from . import align, figures, media
from .errors import FacepipeError
from .fsutil import atomic_path, write_bytes, write_json
from .input_pipeline import BatchStream, center_faces, load_dataset
from .models import FaceSwapModel, ModelSettings, count_params, weights_bytes

# Settings that may change without invalidating a checkpoint: more steps continue it.
RESUMABLE_KEYS = {"steps", "save_every", "preview_every"}
PREVIEW_FACES = 4
TIMELAPSE_FPS = 4  # preview grids per second of timelapse


def build(settings: dict) -> tuple[FaceSwapModel, nnx.Optimizer]:
    model = FaceSwapModel(ModelSettings.from_preset(settings["preset"]), rngs=nnx.Rngs(settings["seed"]))
    tx = optax.adam(settings["learning_rate"], b1=0.5, b2=0.999)
    return model, nnx.Optimizer(model, tx, wrt=nnx.Param)


def ssim(x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean structural similarity of NHWC images in [0, 1] (Gaussian window 11, sigma 1.5)."""
    taps = jnp.exp(-((jnp.arange(11) - 5) ** 2) / (2 * 1.5 ** 2))
    window = jnp.outer(taps, taps) / taps.sum() ** 2
    channels = x.shape[-1]
    kernel = jnp.tile(window[:, :, None, None], (1, 1, 1, channels))

    def blur(a):
        return jax.lax.conv_general_dilated(a, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            feature_group_count=channels)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return jnp.mean(((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2)))


def image_loss(pred: jax.Array, target: jax.Array, kind: str) -> jax.Array:
    """`mae` (the original) or `ssim-mse`: (1 - SSIM) / 2 plus the mean squared error."""
    if kind == "mae":
        return jnp.mean(jnp.abs(pred - target))
    return (1 - ssim(pred, target)) / 2 + jnp.mean((pred - target) ** 2)


class Stepper:
    """The training step as one jitted function of the whole training state (model and
    optimizer), which it donates: XLA updates the 82M parameters and both Adam moments in
    place instead of allocating (and page-faulting in) 1 GB of new buffers every step.

    Data parallel over every visible device: the state is replicated, each batch is
    split across the devices, and XLA sums the gradients (jax.sharding).

    `state` is the live training state; `sync()` writes it back into the model and
    optimizer objects before anything else reads them."""

    def __init__(self, model: FaceSwapModel, optimizer: nnx.Optimizer, loss: str):
        self.model, self.optimizer = model, optimizer
        mesh = jax.sharding.Mesh(np.array(jax.devices()), ("batch",))
        self.batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
        graphdef, state = nnx.split((model, optimizer))
        self.state = jax.device_put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))

        def step(state, warped_a, target_a, warped_b, target_b):
            model, optimizer = nnx.merge(graphdef, state)

            def loss_fn(model):  # one step on both people: the shared encoder learns from both
                # Both people through the encoder as one batch: larger, faster matmuls.
                latent = model.encoder(jnp.concatenate([warped_a, warped_b]))
                loss_a = image_loss(model.decode(latent[:len(warped_a)], "a"), target_a, loss)
                loss_b = image_loss(model.decode(latent[len(warped_a):], "b"), target_b, loss)
                return loss_a + loss_b, (loss_a, loss_b)

            (_, (loss_a, loss_b)), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
            optimizer.update(model, grads)
            return nnx.state((model, optimizer)), loss_a, loss_b

        self._step = jax.jit(step, donate_argnums=0)

    def __call__(self, *batches: np.ndarray) -> tuple[jax.Array, jax.Array]:
        self.state, loss_a, loss_b = self._step(self.state, *jax.device_put(batches, self.batch_sharding))
        return loss_a, loss_b

    def sync(self) -> None:
        nnx.update((self.model, self.optimizer), self.state)


@nnx.jit(static_argnames="side")
def reconstruct(model: FaceSwapModel, faces, side: str):
    return model(faces, side)


def preview_grid(model: FaceSwapModel, faces_a: np.ndarray, faces_b: np.ndarray) -> np.ndarray:
    """Rows of A | A->A | A->B | B | B->B | B->A, as uint8 RGB."""
    columns = [faces_a, reconstruct(model, faces_a, "a"), reconstruct(model, faces_a, "b"),
               faces_b, reconstruct(model, faces_b, "b"), reconstruct(model, faces_b, "a")]
    rows = [np.concatenate([np.asarray(c[i]) for c in columns], axis=1) for i in range(len(faces_a))]
    grid = (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255).round().astype(np.uint8)
    return cv2.resize(grid, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)


def _describe(shape: dict) -> str:
    return f"{shape['model']['resolution']} px {shape['preset']} (coverage {shape['coverage']})"


def write_timelapse(target: Path, previews: list[Path]) -> None:
    """The preview grids in step order as a video: the same faces, learned over time."""
    first = media.read_image(previews[0])
    height, width = first.shape[:2]
    with media.VideoWriter(target, width, height, Fraction(TIMELAPSE_FPS), crf=20, tags=media.SYNTHETIC_TAGS) as video:
        for path in previews:
            video.write(media.read_image(path))


def fingerprint(settings: dict, dataset_dirs: list[Path]) -> str:
    """Identity of a training run: the data and every setting that shapes the result."""
    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in sorted(settings.items()) if k not in RESUMABLE_KEYS}).encode())
    for d in dataset_dirs:
        h.update((d / "faces.json").read_bytes())
    return h.hexdigest()[:16]


class Checkpoints:
    """Orbax CheckpointManager over model + optimizer state, step, batch RNG states and
    loss history. Each save is atomic (orbax commits a step only when complete)."""

    def __init__(self, directory: Path, run_id: str, shape: dict):
        """`shape`: the settings that shape the network. A checkpoint of another shape is
        refused (it cannot be continued, and deleting days of training is the user's
        call); one of the same shape but other data or settings is replaced."""
        self.directory = directory.resolve()
        marker = self.directory / "run.json"
        shape = json.loads(json.dumps(shape))  # as it reads back from run.json (tuples become lists)
        if self.directory.exists():
            try:
                previous = json.loads(marker.read_text())
                previous_run, previous_shape = previous["run"], previous["shape"]
            except (OSError, ValueError, KeyError, TypeError):
                raise FacepipeError(f"train: {marker} is missing or unreadable, so {directory} cannot be resumed; "
                                    "delete that folder to start over") from None
            if previous_shape != shape:
                raise FacepipeError(f"train: {directory} holds a checkpoint of a {_describe(previous_shape)} model, "
                                    f"params.yaml asks for a {_describe(shape)} one; set train back to match, or "
                                    "delete that folder to start over")
            if previous_run != run_id:
                print(f"train: {directory} holds another run (data or settings changed): starting over")
                shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        write_json(marker, {"run": run_id, "shape": shape})
        self.manager = ocp.CheckpointManager(self.directory / "steps", options=ocp.CheckpointManagerOptions(max_to_keep=2))

    def save(self, step: int, model, optimizer, meta: dict) -> None:
        if step in self.manager.all_steps():
            return
        state = nnx.to_pure_dict(nnx.state((model, optimizer)))
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        meta=ocp.args.JsonSave(meta)), force=True)
        self.manager.wait_until_finished()

    def save_preview(self, step: int, grid: np.ndarray) -> None:
        """Kept with the checkpoints, so a resumed run's timelapse starts at step 0."""
        folder = self.directory / "previews"
        folder.mkdir(exist_ok=True)
        with atomic_path(folder / f"{step:08d}.png") as tmp:
            media.write_image(tmp, grid)

    def previews(self) -> list[Path]:
        return sorted((self.directory / "previews").glob("*.png"))

    def restore_latest(self, model, optimizer) -> dict | None:
        """The newest readable checkpoint; a damaged one (a crash mid-copy, a bad disk)
        falls back to the one before it."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        for step in steps:
            state = nnx.state((model, optimizer))
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, nnx.to_pure_dict(state))
            try:
                restored = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
            except Exception as exc:  # orbax raises many types for unreadable data
                print(f"train: checkpoint {self.directory}/steps/{step} is unreadable "
                      f"({type(exc).__name__}); removing it and trying the one before")
                self.manager.delete(step)
                continue
            nnx.replace_by_pure_dict(state, restored.state)
            nnx.update((model, optimizer), state)
            return restored.meta
        if steps:
            raise FacepipeError(f"train: no readable checkpoint in {self.directory}; delete that folder to start over")
        return None


def run(dataset_a: str | Path, dataset_b: str | Path, out_dir: str | Path, checkpoint_dir: str | Path,
        settings: dict, people: tuple[str, str] = ("a", "b")) -> dict:
    dataset_dirs = [Path(dataset_a), Path(dataset_b)]
    faces = [load_dataset(d) for d in dataset_dirs]
    devices = jax.device_count()
    if settings["batch_size"] % devices:
        raise FacepipeError(f"train: train.batch_size={settings['batch_size']} does not split over the {devices} "
                            f"devices; use a multiple of {devices}")
    for d, f in zip(dataset_dirs, faces):
        if len(f) < settings["batch_size"]:
            raise FacepipeError(f"train: {d} has {len(f)} faces, fewer than train.batch_size={settings['batch_size']}; "
                                "add sources for this person or lower train.batch_size in params.yaml")
    ms = ModelSettings.from_preset(settings["preset"])
    coverage = settings["coverage"]
    shape = {"preset": settings["preset"], "model": ms.to_json(), "coverage": coverage}
    ckpt = Checkpoints(Path(checkpoint_dir), fingerprint(settings, dataset_dirs), shape)  # refuses before building
    model, optimizer = build(settings)
    meta = ckpt.restore_latest(model, optimizer)
    step, history = (meta["step"], meta["history"]) if meta else (0, [])
    if meta:
        print(f"train: resuming from step {step} of {settings['steps']} ({ckpt.directory})")
    if devices > 1:
        print(f"train: data parallel over {devices} devices ({jax.devices()[0].platform}), "
              f"{settings['batch_size'] // devices} faces per person on each")
    if step > settings["steps"]:
        raise FacepipeError(f"train: checkpoint in {checkpoint_dir} is at step {step}, past train.steps="
                            f"{settings['steps']}; raise train.steps or delete the checkpoint folder")
    preview_rng = np.random.default_rng(settings["seed"])
    preview_faces = [center_faces(f[preview_rng.choice(len(f), min(PREVIEW_FACES, len(f)), replace=False)],
                     ms.resolution, coverage) for f in faces]
    log_every = max(1, settings["steps"] // 1000)
    rng_states = {}
    started, first_step = time.time(), step
    progress = tqdm(total=settings["steps"], initial=step, desc=f"train {people[0]}<->{people[1]}", unit="step")

    stepper = Stepper(model, optimizer, settings["loss"])

    def save():
        stepper.sync()
        ckpt.save(step, model, optimizer, {"step": step, "history": history, **rng_states})

    # Started last, just before the loop whose `finally` stops them.
    seeds = np.random.SeedSequence(settings["seed"]).spawn(2)
    streams = [BatchStream(f, settings["batch_size"], ms.resolution, coverage, np.random.default_rng(s),
                           resume_after=meta[f"rng_{side}"] if meta else None)
               for f, s, side in zip(faces, seeds, "ab")]
    try:
        while step < settings["steps"]:
            (rng_states["rng_a"], (wa, ta)), (rng_states["rng_b"], (wb, tb)) = streams[0].next(), streams[1].next()
            loss_a, loss_b = stepper(wa, ta, wb, tb)
            step += 1
            if step % log_every == 0 or step == settings["steps"]:
                history.append([step, round(float(loss_a), 6), round(float(loss_b), 6)])
                progress.set_postfix(loss_a=f"{history[-1][1]:.4f}", loss_b=f"{history[-1][2]:.4f}")
            progress.update(1)
            if step % settings["save_every"] == 0:
                save()
            if step % settings["preview_every"] == 0:
                stepper.sync()
                ckpt.save_preview(step, preview_grid(model, *preview_faces))
    except KeyboardInterrupt:
        if step and step % settings["save_every"]:
            save()
        print(f"\ntrain: interrupted at step {step}; checkpoint saved, rerun to continue")
        raise
    finally:
        progress.close()
        for s in streams:
            s.close()
    save()

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_bytes(out_dir / "weights.msgpack", weights_bytes(model))
    final_grid = preview_grid(model, *preview_faces)
    ckpt.save_preview(step, final_grid)
    with atomic_path(out_dir / "preview.png") as tmp:
        media.write_image(tmp, final_grid)
    write_timelapse(out_dir / "timelapse.mp4", ckpt.previews())
    with atomic_path(out_dir / "loss.csv") as tmp:
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["step", "loss_a", "loss_b"])
            writer.writerows(history)
    with atomic_path(out_dir / "loss.png") as tmp:
        media.write_image(tmp, figures.loss_plot([h[0] for h in history], {
            f"loss {people[0]} (A)": [h[1] for h in history], f"loss {people[1]} (B)": [h[2] for h in history]}))
    model_info = {
        "people": {"a": people[0], "b": people[1]},
        "preset": settings["preset"],
        "model": ms.to_json(),
        "coverage": coverage,
        "crop_size": int(faces[0].shape[1]),
        "padding_fraction": align.PADDING_FRACTION,  # where the mean face sits in the crops it learned
        "parameters": count_params(model),
        "steps": step,
    }
    write_json(out_dir / "model.json", model_info)
    metrics = {"steps": step, "loss_a": history[-1][1], "loss_b": history[-1][2],
               "faces_a": len(faces[0]), "faces_b": len(faces[1]),
               "steps_this_run": step - first_step, "seconds_this_run": round(time.time() - started, 1)}
    write_json(out_dir / "metrics.json", metrics)
    return metrics
