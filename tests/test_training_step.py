"""The training step in-process, on real faces: the device augmentation draws what the
original OpenCV one drew, mixed precision trains like float32, big batches train
stably, and a model started from another takes its weights."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import yaml
from flax import nnx

from conftest import ROOT
from facepipe import input_pipeline, train
from facepipe.models import weights_bytes
from facepipe.settings import section
from opencv_augment import opencv_transform, opencv_warp


def _statistics(warped, target, centred):
    """Per-pixel mean and spread of the inputs, how far the warp moves pixels (input
    against target) and how far the random transform moves them (target against the
    untransformed face)."""
    return {"mean": warped.mean(0), "spread": warped.std(0), "warp": np.abs(warped - target).mean(),
            "transform": np.abs(target - centred).mean()}


def augmentation_statistics(face, count, seed):
    """Statistics of `count` augmentations of one face by each implementation."""
    resolution, coverage = 64, 0.625
    centred = input_pipeline.center_faces(face[None], resolution, coverage)[0]
    rng = np.random.default_rng(seed)
    pairs = [opencv_warp(opencv_transform(face[..., :3], rng), resolution, coverage, rng) for _ in range(count)]
    opencv = _statistics(np.stack([p[0] for p in pairs]) / 255, np.stack([p[1] for p in pairs]) / 255, centred)
    warped, target, labels = input_pipeline.augment(jax.random.PRNGKey(seed), jax.device_put(face[None]), count,
                                                    resolution, coverage)
    return opencv, _statistics(np.asarray(warped), np.asarray(target), centred), np.asarray(labels)


@pytest.fixture(scope="module")
def faces(built):
    return [input_pipeline.load_faces([built / f"results/datasets/{person}"]) for person in ("woman_a", "woman_b")]


def test_device_augmentation_draws_what_the_opencv_one_drew(faces):
    # Measured on three faces: mean images 0.004-0.006 apart, spreads 0.0025-0.0033, warp
    # within 2.3%, transform within 0.7%. Each limit fails for a wrong range: rotation
    # +-20 degrees gave spreads 0.008-0.009 apart and transform +7.5-13%; flips at 0.5,
    # transform +3.4-5.7%; a warp grid jittered 20% more, warp +14-15%.
    for face in (faces[0][0], faces[1][0], faces[1][-1]):
        opencv, device, labels = augmentation_statistics(face, 1000, 0)
        assert np.abs(device["mean"] - opencv["mean"]).mean() < 0.008
        assert np.abs(device["spread"] - opencv["spread"]).mean() < 0.006
        assert device["warp"] == pytest.approx(opencv["warp"], rel=0.06)
        assert device["transform"] == pytest.approx(opencv["transform"], rel=0.03)
        assert set(np.unique(labels)) == {0, 1, 2, 3}  # background, face, mouth and eyes all drawn


def _settings(**overrides):
    settings = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]
    return section({"train": {**settings, "preset": "tiny", "batch_size": 8, "learning_rate": 5e-4, **overrides}},
                   "train")


def _losses(trainer, steps):
    return np.array([[float(loss) for loss in trainer.step()] for _ in range(steps)])


def test_bfloat16_trains_like_float32(faces):
    """Mixed precision: parameters and Adam's moments stay float32, convolutions and
    matrix products run in bfloat16. Measured: the first 5 steps' losses within 1e-4 of
    float32's (the loss averages each pixel's rounding away); after 30 steps both fell to
    0.38x (A) and 0.74x (B) of the start, 2-3% apart."""
    settings = _settings(recipe="original")
    full, mixed = (train.Trainer(faces[0][:40], faces[1][:40], settings, precision) for precision in
                   ("float32", "bfloat16"))
    assert mixed.model.encoder.convs[0].kernel[...].dtype == np.float32
    full_losses, mixed_losses = _losses(full, 30), _losses(mixed, 30)
    np.testing.assert_allclose(mixed_losses[:5], full_losses[:5], rtol=1e-3)
    assert (mixed_losses[-5:].mean(0) < 0.85 * mixed_losses[:5].mean(0)).all()  # it learns,
    np.testing.assert_allclose(mixed_losses[-5:].mean(0), full_losses[-5:].mean(0), rtol=0.1)  # as fast


def _update_sizes(optimizer, gradients):
    """Length of each update `optimizer` makes, fed `gradients` one after another."""
    params = np.zeros(64, np.float32)
    state, sizes = optimizer.init(params), []
    for gradient in gradients:
        update, state = optimizer.update(gradient, state, params)
        sizes.append(float(np.linalg.norm(update)))
    return np.array(sizes)


def test_a_gradient_spike_does_not_stall_the_fast_recipe():
    """Found on a GPU: unclipped, the fast recipe collapsed near step 3,000 of real
    training, in bfloat16 and float32 alike (train.Recipe.clip_norm has the figures). An
    unclipped spike's square stays in Adam's second moment for thousands of steps and
    shrinks every later update, so the model cannot climb back; clipped to length 1, it
    hardly counts. The 2017 recipe stays unclipped so its figures reproduce, and stalls."""
    rng = np.random.default_rng(0)
    gradients = [rng.normal(size=64).astype(np.float32) * 0.1 for _ in range(120)]
    gradients[20] = gradients[20] * 10_000  # one spike, length about 8000
    # Measured, updates 60-100 steps after the spike over those before it: fast 0.82,
    # fast without its clipping 0.046, original 0.064.
    for recipe, after_over_before in (("fast", (0.5, 2.0)), ("original", (0.0, 0.2))):
        sizes = _update_sizes(train.optimizer_for(_settings(recipe=recipe)), gradients)
        ratio = sizes[80:].mean() / sizes[10:20].mean()
        assert after_over_before[0] < ratio < after_over_before[1], (recipe, ratio)


@pytest.mark.slow  # 20 steps of 2 x 256 faces: a minute and a half on 2 cores
def test_a_batch_of_256_trains_stably(faces):
    """The big-batch rule (a rate 4x that of batch 16, reached by a 100-step warm-up)
    keeps a batch of 256 faces a person stable: no NaN, and the loss falls within the
    warm-up. Measured: both losses together 0.358 over the first 3 steps, 0.289 over steps
    14-16 and 0.21 by step 20 (5.4 s a step on this CPU)."""
    trainer = train.Trainer(faces[0], faces[1], _settings(recipe="original", batch_size=256), "float32")
    losses = _losses(trainer, 20).sum(1)
    assert np.isfinite(losses).all()
    assert losses[-3:].mean() < 0.75 * losses[:3].mean(), losses


def test_a_model_started_from_another_takes_the_chosen_parts(faces):
    first = train.Trainer(faces[0][:40], faces[1][:40], _settings(), "float32", people=("woman_a", "woman_b"))
    _losses(first, 3)
    first.sync()
    start = ({"people": {"a": "woman_a", "b": "woman_b"}}, weights_bytes(first.model))

    def params(model, part):
        return jax.tree.leaves(nnx.state(getattr(model, part), nnx.Param))

    def same(a, b):
        return all(np.array_equal(x, y) for x, y in zip(a, b))

    # The other way round, encoder only: decoders start fresh.
    encoder = train.Trainer(faces[1][:40], faces[0][:40], _settings(seed=5), "float32", (*start, "encoder"),
                            people=("woman_b", "woman_a")).model
    assert same(params(encoder, "encoder"), params(first.model, "encoder"))
    assert not same(params(encoder, "decoder_a"), params(first.model, "decoder_b"))
    # Both: each person gets their own decoder back, whichever side they are on now.
    both = train.Trainer(faces[1][:40], faces[0][:40], _settings(seed=5), "float32", (*start, "both"),
                         people=("woman_b", "woman_a")).model
    assert same(params(both, "decoder_a"), params(first.model, "decoder_b"))
    assert same(params(both, "decoder_b"), params(first.model, "decoder_a"))
