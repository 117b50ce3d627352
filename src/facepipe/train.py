"""train: fit one shared encoder and a decoder per person on their aligned faces.

A recipe (`train.recipe`) says how the model learns: its loss, how much each face region
counts, and Adam's learning rate and betas. `original` is the 2017 one (MAE over the
whole picture, Adam(5e-5, b1=0.5, b2=0.999)), kept so its figures can be reproduced;
`fast` is facepipe's, chosen by measurement (benchmarks/quality_vs_time.py). A model can
start from another one (`train.init_from`: a pair of the config, the pretrained model of
the config, or a model folder), and a pretrained model is trained like a pair with a pool
of many people's faces on both sides. Orbax checkpoints every `train.save_every` steps
(and on Ctrl-C) so a rerun resumes; writes the weights (msgpack), the settings that
shaped them, a preview grid, a timelapse of the preview grids, the loss history (a DVC
plot) and final metrics."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import logging
import math
import shutil
import signal
import threading
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
from jax.experimental import multihost_utils
from tqdm import tqdm

from . import align, devices, figures, hosts, media, stage_code, tagging
from .errors import FacepipeError
from .formats import model_folder
from .fsutil import atomic_path, no_space_message, out_of_space, write_json
from .input_pipeline import augment, center_faces, load_faces
from .losses import image_loss
from .models import FaceSwapModel, ModelSettings, load_weights, reconstruct
from .settings import TrainSettings

# Settings that may change without invalidating a checkpoint: more steps continue it, and
# more hosts share its steps.
RESUMABLE_KEYS = ("steps", "save_every", "preview_every", "hosts")
# How a run starts counts by what it really starts from (see fingerprint), not by these.
START_KEYS = ("init_from", "init_parts")
PREVIEW_FACES = 4
TIMELAPSE_FPS = 4  # preview grids per second of timelapse
# The learning rate rule: a recipe's rate is for 16 faces per person and step; a batch
# of N uses rate * sqrt(N / 16) (the gradient's noise falls as sqrt(N)), reached by a
# linear warm-up, which bigger batches always get (Adam's first steps are the largest).
REFERENCE_BATCH, BIG_BATCH_WARMUP = 16, 100


@dataclasses.dataclass(frozen=True)
class Recipe:
    loss: str  # losses.image_loss kind
    region_weights: tuple[float, float, float, float]  # background, face, mouth, eyes
    learning_rate: float  # at REFERENCE_BATCH faces per person
    b1: float
    b2: float
    # Gradients longer than this (global norm) are scaled down to it before Adam sees
    # them. Measured on an H200 (woman_a <-> woman_b, lite, batch 16): without it the fast
    # recipe collapsed near step 3,000 into a model drawing one flat colour (held-out MAE
    # 0.36 in bfloat16, 0.37 in float32 at 30-38k steps; at half the rate, 0.16 and
    # spiking); with it, 0.028 at 38k steps and still falling. Early gradients measure
    # 0.2-1.3, so the first steps are nearly untouched. DeepFaceLab's `clipgrad` is the
    # same remedy for "model collapse".
    clip_norm: float | None


RECIPES = {
    "original": Recipe("mae", (1.0, 1.0, 1.0, 1.0), 5e-5, 0.5, 0.999, None),
    "fast": Recipe("ssim-l1", (0.1, 1.0, 2.0, 3.0), 2e-4, 0.9, 0.999, 1.0),
}


def learning_rate(settings: TrainSettings) -> optax.Schedule | float:
    recipe = RECIPES[settings.recipe]
    peak = (settings.learning_rate or recipe.learning_rate) * math.sqrt(settings.batch_size / REFERENCE_BATCH)
    if settings.batch_size <= REFERENCE_BATCH:
        return peak  # measured: a warm-up at batch 16 only delays the fast recipe (README, Training)
    return optax.linear_schedule(peak / BIG_BATCH_WARMUP, peak, BIG_BATCH_WARMUP)


def optimizer_for(settings: TrainSettings) -> optax.GradientTransformation:
    """Adam as the recipe sets it, after its gradient clipping if it has one."""
    recipe = RECIPES[settings.recipe]
    adam = optax.adam(learning_rate(settings), b1=recipe.b1, b2=recipe.b2)
    return adam if recipe.clip_norm is None else optax.chain(optax.clip_by_global_norm(recipe.clip_norm), adam)


def local(x: jax.Array) -> jax.Array:
    """This process's copy of a replicated array: the host can read it even when the
    array spans other processes' devices (train.hosts > 1)."""
    return x.addressable_data(0)


def all_processes_reach(point: str) -> None:
    """Wait until every training process gets here (train.hosts > 1)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(point)


def _describe(shape: dict) -> str:
    return f"{shape['model']['resolution']} px {shape['preset']} (coverage {shape['coverage']})"


def model_shape(settings: TrainSettings) -> dict:
    """The settings that shape the network: a checkpoint or a model to start from must
    have the same."""
    return {"preset": settings.preset, "model": ModelSettings.from_preset(settings.preset).to_json(),
            "coverage": settings.coverage}


def start_parts(parts: str, people: tuple[str, str], init_people: dict) -> dict[str, str]:
    """Which part of the model started from each part of this one takes (models.load_weights).
    A person the other model knows gets their own decoder; the other side, the one left."""
    mapping = {"encoder": "encoder"} if parts in ("encoder", "both") else {}
    if parts in ("decoders", "both"):
        known = {person: f"decoder_{side}" for side, person in init_people.items()}
        a, b = known.get(people[0]), known.get(people[1])
        if a is None and b is None:
            a, b = "decoder_a", "decoder_b"
        elif a is None:
            a = "decoder_a" if b == "decoder_b" else "decoder_b"
        elif b is None:
            b = "decoder_b" if a == "decoder_a" else "decoder_a"
        mapping.update(decoder_a=a, decoder_b=b)
    return mapping


def read_start(init_dir: Path, settings: TrainSettings) -> tuple[dict, bytes]:
    """model.json and weights of the model to start from, checked against this one's shape."""
    try:
        info, weights = model_folder.read_info(init_dir), model_folder.read_weights(init_dir)
    except FacepipeError as exc:
        raise FacepipeError(f"train: train.init_from: {init_dir} holds no readable model ({exc}); train it first, "
                            "or dvc pull it") from None
    shape, theirs = model_shape(settings), {k: info.get(k) for k in ("preset", "model", "coverage")}
    if json.loads(json.dumps(shape)) != theirs:
        raise FacepipeError(f"train: train.init_from: {init_dir} holds a {_describe(theirs)} model, params.yaml asks "
                            f"for a {_describe(shape)} one; set train.preset and train.coverage to match it")
    return info, weights


def learn(model: FaceSwapModel, optimizer: nnx.Optimizer, recipe: Recipe, batch_a: tuple, batch_b: tuple
          ) -> tuple[jax.Array, jax.Array]:
    """One optimizer step on both people's batches (warped input, target, region labels;
    inside a jitted function): the shared encoder learns from both. Returns each loss."""
    (warped_a, target_a, labels_a), (warped_b, target_b, labels_b) = batch_a, batch_b
    batch = warped_a.shape[0]

    def loss_fn(model):
        # Both people through the encoder as one batch: larger, faster matmuls.
        latent = model.encoder(jnp.concatenate([warped_a, warped_b]))
        loss_a = image_loss(model.decode(latent[:batch], "a"), target_a, labels_a, recipe.loss, recipe.region_weights)
        loss_b = image_loss(model.decode(latent[batch:], "b"), target_b, labels_b, recipe.loss, recipe.region_weights)
        return loss_a + loss_b, (loss_a, loss_b)

    (_, (loss_a, loss_b)), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads)
    return loss_a, loss_b


class Trainer:
    """The model, its optimizer, the batches' RNG key and the training step: one jitted
    function of the whole training state, which it donates (XLA updates the parameters
    and both Adam moments in place). Each step draws and augments both people's batches
    on the device (input_pipeline.augment) from faces uploaded once.

    Data parallel over every device of every training process (train.hosts): the state
    and the faces are replicated, each batch is split across the devices, and XLA sums
    the gradients (jax.sharding). Each process puts the same arrays, loaded from the
    same files, in its devices' share.

    `state` is the live training state; `sync()` writes this process's copy of it into
    `model` and `optimizer` before anything else reads them."""

    def __init__(self, faces_a: np.ndarray, faces_b: np.ndarray, settings: TrainSettings, precision: str,
                 start: tuple[dict, bytes, str] | None = None, people: tuple[str, str] = ("a", "b")):
        recipe = RECIPES[settings.recipe]
        ms = ModelSettings.from_preset(settings.preset)
        self.model = FaceSwapModel(ms, dtype=devices.DTYPES[precision], rngs=nnx.Rngs(settings.seed))
        if start:
            info, weights, parts = start
            load_weights(self.model, weights, start_parts(parts, people, info["people"]))
        self.optimizer = nnx.Optimizer(self.model, optimizer_for(settings), wrt=nnx.Param)
        mesh = jax.sharding.Mesh(np.array(jax.devices()), ("batch",))
        self._replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
        self.faces = [jax.device_put(f, self._replicated) for f in (faces_a, faces_b)]
        self.key = jax.device_put(jax.random.PRNGKey(settings.seed), self._replicated)
        graphdef, state = nnx.split((self.model, self.optimizer))
        self.state = jax.device_put(state, self._replicated)
        batch, coverage = settings.batch_size, settings.coverage

        def step(state, key, faces_a, faces_b):
            model, optimizer = nnx.merge(graphdef, state)
            key, key_a, key_b = jax.random.split(key, 3)
            batches = [augment(k, f, batch, ms.resolution, coverage) for k, f in ((key_a, faces_a), (key_b, faces_b))]
            loss_a, loss_b = learn(model, optimizer, recipe, *jax.lax.with_sharding_constraint(batches, batch_sharding))
            return nnx.state((model, optimizer)), key, loss_a, loss_b

        self._step = jax.jit(step, donate_argnums=(0, 1))

    def step(self) -> tuple[jax.Array, jax.Array]:
        self.state, self.key, loss_a, loss_b = self._step(self.state, self.key, *self.faces)
        return loss_a, loss_b

    def sync(self) -> None:
        nnx.update((self.model, self.optimizer), jax.tree.map(local, self.state))

    def checkpoint(self) -> tuple[dict, list[int]]:
        """The training state as a pure dict (of arrays over every process's devices, as
        orbax saves them together), and the RNG key."""
        return nnx.to_pure_dict(self.state), np.asarray(local(self.key)).tolist()

    def restore(self, pure: dict, key: list[int]) -> None:
        state = nnx.state((self.model, self.optimizer))
        nnx.replace_by_pure_dict(state, pure)
        nnx.update((self.model, self.optimizer), state)
        self.state = jax.device_put(nnx.state((self.model, self.optimizer)), self._replicated)
        self.key = jax.device_put(jnp.asarray(key, jnp.uint32), self._replicated)


def preview_grid(model: FaceSwapModel, faces_a: np.ndarray, faces_b: np.ndarray) -> np.ndarray:
    """Rows of A | A->A | A->B | B | B->B | B->A, as uint8 RGB."""
    columns = [faces_a, reconstruct(model, faces_a, "a"), reconstruct(model, faces_a, "b"),
               faces_b, reconstruct(model, faces_b, "b"), reconstruct(model, faces_b, "a")]
    rows = [np.concatenate([np.asarray(c[i]) for c in columns], axis=1) for i in range(len(faces_a))]
    grid = (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255).round().astype(np.uint8)
    return cv2.resize(grid, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)


def write_timelapse(target: Path, previews: list[Path]) -> None:
    """The preview grids in step order as a video: the same faces, learned over time."""
    first = media.read_image(previews[0])
    height, width = first.shape[:2]
    with media.VideoWriter(target, width, height, Fraction(TIMELAPSE_FPS), crf=20, tags=tagging.SYNTHETIC_TAGS) as video:
        for path in previews:
            video.write(media.read_image(path))


def fingerprint(settings: TrainSettings, dataset_dirs: list[Path], start: tuple[dict, bytes, str] | None) -> str:
    """Identity of a training run: the data, the model it starts from, every setting
    that shapes the result and the code that computes it (a checkpoint of other code is
    not continued)."""
    h = hashlib.sha256(stage_code.fingerprint("train").encode())
    h.update(json.dumps({k: v for k, v in sorted(dataclasses.asdict(settings).items())
                         if k not in RESUMABLE_KEYS + START_KEYS}).encode())
    for d in dataset_dirs:
        h.update((d / "faces.json").read_bytes())
    if start is not None:
        h.update(hashlib.sha256(start[1]).digest() + start[2].encode())
    return h.hexdigest()[:16]


class _FullDiskSaid(logging.Filter):
    """orbax reports a full disk from its writer threads with a traceback (absl's
    logger); the same error reaches the save, and the stage says it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (out_of_space(record.exc_info[1] if record.exc_info else None)
                    or "No space left on device" in record.getMessage())


logging.getLogger("absl").addFilter(_FullDiskSaid())


class Checkpoints:
    """Orbax CheckpointManager over the training state (model and optimizer), the step,
    the batches' RNG key and the loss history. Each save is atomic (orbax commits a step
    only when complete). With several training processes every one saves and restores
    (orbax coordinates them; the folder must be on a file system they share), and
    process 0 alone prepares the folder and keeps the previews."""

    def __init__(self, directory: Path, run_id: str, shape: dict):
        """`shape`: the settings that shape the network. A checkpoint of another shape is
        refused (it cannot be continued, and deleting days of training is the user's
        call); one of the same shape but other data or settings is replaced."""
        self.directory = directory.resolve()
        marker = self.directory / "run.json"
        shape = json.loads(json.dumps(shape))  # as it reads back from run.json (tuples become lists)
        start_over = False
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
            start_over = previous_run != run_id
        all_processes_reach("checkpoint folder checked")  # each read it before process 0 changes it
        if jax.process_index() == 0:
            if start_over:
                print(f"train: {directory} holds another run (data, settings or starting model changed): "
                      "starting over")
                shutil.rmtree(self.directory)
            self.directory.mkdir(parents=True, exist_ok=True)
            write_json(marker, {"run": run_id, "shape": shape})
        all_processes_reach("checkpoint folder ready")
        self.manager = ocp.CheckpointManager(self.directory / "steps", options=ocp.CheckpointManagerOptions(max_to_keep=2))

    def save(self, step: int, trainer: Trainer, meta: dict) -> None:
        if step in self.manager.all_steps():
            return
        state, key = trainer.checkpoint()
        # Checked first: orbax met with a full disk midway leaves its writers' tracebacks.
        needed = sum(leaf.nbytes for leaf in jax.tree.leaves(state)) + (1 << 20)
        free = shutil.disk_usage(self.directory).free
        if free < needed:
            raise FacepipeError(no_space_message(self.directory, needed=needed))
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        meta=ocp.args.JsonSave({**meta, "key": key})), force=True)
        self.manager.wait_until_finished()

    def save_preview(self, step: int, grid: np.ndarray) -> None:
        """Kept with the checkpoints, so a resumed run's timelapse starts at step 0."""
        folder = self.directory / "previews"
        folder.mkdir(exist_ok=True)
        with atomic_path(folder / f"{step:08d}.png") as tmp:
            media.write_image(tmp, grid)

    def previews(self) -> list[Path]:
        return sorted((self.directory / "previews").glob("*.png"))

    def restore_latest(self, trainer: Trainer) -> dict | None:
        """The newest readable checkpoint; a damaged one (a crash mid-copy, a bad disk)
        falls back to the one before it."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        for step in steps:
            state, _ = trainer.checkpoint()
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
            try:
                restored = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
            except Exception as exc:  # orbax raises many types for unreadable data
                if jax.process_index() == 0:
                    print(f"train: checkpoint {self.directory}/steps/{step} is unreadable "
                          f"({type(exc).__name__}); removing it and trying the one before")
                self.manager.delete(step)
                continue
            trainer.restore(restored.state, restored.meta["key"])
            return restored.meta
        if steps:
            raise FacepipeError(f"train: no readable checkpoint in {self.directory}; delete that folder to start over")
        return None


def write_model(out_dir: Path, trainer: Trainer, info: dict) -> None:
    """The model a later stage (or another model) uses: weights and model.json."""
    trainer.sync()
    model_folder.write(out_dir, trainer.model, info)


def model_info(settings: TrainSettings, people: tuple[str, str], precision: str, crop_size: int, steps: int,
               start: tuple[Path, str, bytes] | None) -> dict:
    """What model.json says of a model: who, which network, how it saw the faces."""
    return {
        "people": {"a": people[0], "b": people[1]},
        **model_shape(settings),
        "crop_size": crop_size,
        "padding_fraction": align.PADDING_FRACTION,  # where the mean face sits in the crops it learned
        "recipe": settings.recipe,
        "precision": {"setting": settings.precision, "trained": precision},
        "started_from": None if start is None else {"model": str(start[0]), "parts": start[1],
                                                    "weights_sha256": hashlib.sha256(start[2]).hexdigest()},
        "steps": steps,
    }


class StepEnd(KeyboardInterrupt):
    """Ctrl-C, acted on between two steps."""


@contextlib.contextmanager
def stop_between_steps(enabled: bool):
    """Ctrl-C (SIGINT), or SIGTERM (a cluster's time limit or preemption), stops the
    training between two steps, not inside one: a step cut short (its batch's random key
    drawn, its weights updated, its loss not yet logged) would save a state that resumes
    into another training than the uninterrupted one. A second signal stops at once,
    keeping the last checkpoint."""
    requested = threading.Event()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def handler(signum, frame):
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        print(f"\ntrain: {signal.Signals(signum).name}: stopping after this step (again: stop now)", flush=True)

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)


def run(*, datasets_a: list[str | Path], datasets_b: list[str | Path], init_from: str | Path | None = None,
        out_dir: str | Path, checkpoint_dir: str | Path, settings: TrainSettings,
        people: tuple[str, str] = ("a", "b")) -> dict | None:
    """Train a pair (one dataset a side) or a pretrained model (the same pool of many
    people's datasets on both sides), optionally starting from the model in `init_from`
    (`train.init_parts` of it). With several training processes (hosts.py) each runs
    this; process 0 alone reports, writes the outputs and returns the metrics."""
    init_parts = settings.init_parts
    dataset_dirs = [[Path(d) for d in datasets_a], [Path(d) for d in datasets_b]]
    faces = [load_faces(dirs) for dirs in dataset_dirs]
    device_count = jax.device_count()
    if settings.batch_size % device_count:
        raise FacepipeError(f"train: train.batch_size={settings.batch_size} does not split over the "
                            f"{device_count} devices; use a multiple of {device_count}")
    for dirs, f in zip(dataset_dirs, faces):
        if len(f) < settings.batch_size:
            raise FacepipeError(f"train: {', '.join(map(str, dirs))} has {len(f)} faces, fewer than "
                                f"train.batch_size={settings.batch_size}; add sources for this person or lower "
                                "train.batch_size in params.yaml")
    start = None
    if init_from is not None:
        init_info, init_weights = read_start(Path(init_from), settings)
        start = (init_info, init_weights, init_parts)
    unique_dirs = list(dict.fromkeys(dataset_dirs[0] + dataset_dirs[1]))
    ckpt = Checkpoints(Path(checkpoint_dir), fingerprint(settings, unique_dirs, start),
                       model_shape(settings))  # refuses before building
    primary, process_count = jax.process_index() == 0, jax.process_count()
    hosts.log_native_output(ckpt.directory, jax.process_index())
    precision = devices.announce("train", settings.precision) if primary else devices.precision(settings.precision)
    trainer = Trainer(faces[0], faces[1], settings, precision, start, people)
    meta = ckpt.restore_latest(trainer)
    step, history = (meta["step"], meta["history"]) if meta else (0, [])
    if primary and meta:
        print(f"train: resuming from step {step} of {settings.steps} ({ckpt.directory})")
    elif primary and init_from is not None:
        print(f"train: starting from {init_from} ({init_parts})")
    if device_count > 1 and primary:
        processes = f" in {process_count} processes" if process_count > 1 else ""
        print(f"train: data parallel over {device_count} devices ({jax.devices()[0].platform}){processes}, "
              f"{settings.batch_size // device_count} faces per person on each")
    if step > settings.steps:
        raise FacepipeError(f"train: checkpoint in {checkpoint_dir} is at step {step}, past train.steps="
                            f"{settings.steps}; raise train.steps or delete the checkpoint folder")
    ms = ModelSettings.from_preset(settings.preset)
    preview_rng = np.random.default_rng(settings.seed)
    preview_faces = [center_faces(f[preview_rng.choice(len(f), min(PREVIEW_FACES, len(f)), replace=False)],
                     ms.resolution, settings.coverage) for f in faces]
    log_every = max(1, settings.steps // 1000)
    started, first_step = time.time(), step
    progress = tqdm(total=settings.steps, initial=step, desc=f"train {people[0]}<->{people[1]}", unit="step",
                    disable=not primary)

    def save():
        ckpt.save(step, trainer, {"step": step, "history": history})

    # With several processes, a save needs every one of them, and others may not stop at
    # the same step: Ctrl-C stops each at once, and a rerun resumes from the last checkpoint.
    with stop_between_steps(process_count == 1) as stop_requested:
        try:
            while step < settings.steps:
                loss_a, loss_b = trainer.step()
                step += 1
                if step % log_every == 0 or step == settings.steps:
                    history.append([step, round(float(local(loss_a)), 6), round(float(local(loss_b)), 6)])
                    progress.set_postfix(loss_a=f"{history[-1][1]:.4f}", loss_b=f"{history[-1][2]:.4f}")
                progress.update(1)
                if step % settings.save_every == 0:
                    save()
                if step % settings.preview_every == 0 and primary:
                    trainer.sync()
                    ckpt.save_preview(step, preview_grid(trainer.model, *preview_faces))
                if stop_requested.is_set():
                    raise StepEnd
        except StepEnd:
            if step % settings.save_every:
                save()
            print(f"\ntrain: interrupted at step {step}; checkpoint saved, rerun to continue")
            raise
        except KeyboardInterrupt:
            print(f"\ntrain: process {jax.process_index()} interrupted at step {step}; "
                  f"{hosts.resume_advice(ckpt.directory)}")
            raise
        finally:
            progress.close()
    save()
    if not primary:
        return None

    out_dir = Path(out_dir)
    write_model(out_dir, trainer, model_info(settings, people, precision, int(faces[0].shape[1]), step,
                                             None if start is None else (Path(init_from), init_parts, start[1])))
    final_grid = preview_grid(trainer.model, *preview_faces)
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
    metrics = {"steps": step, "loss_a": history[-1][1], "loss_b": history[-1][2],
               "faces_a": len(faces[0]), "faces_b": len(faces[1]),
               "steps_this_run": step - first_step, "seconds_this_run": round(time.time() - started, 1)}
    write_json(out_dir / "metrics.json", metrics)
    return metrics
