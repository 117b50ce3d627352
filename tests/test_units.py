"""Library pieces checked directly: geometry, model shape, config checks, workflow files."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from conftest import BIN, ROOT, run
from facepipe import align, dvcstages
from facepipe.config import check_config, check_params
from facepipe.errors import FacepipeError
from facepipe.models import FaceSwapModel, ModelSettings, count_params, pixel_shuffle
from facepipe.plan import source_id


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (51, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = scale * src @ rot.T + shift
    t = align.umeyama(src, dst)
    np.testing.assert_allclose(t[2], [0, 0, 1])
    np.testing.assert_allclose(t[:2, :2], scale * rot, atol=1e-9)
    np.testing.assert_allclose(t[:2, 2], shift, atol=1e-9)


def test_crop_matrix_puts_the_mean_face_in_the_middle():
    landmarks = np.zeros((68, 2))
    landmarks[17:] = align.MEAN_FACE * 300 + 50  # a face at the mean shape, 300 px wide
    m = align.crop_matrix(landmarks, 256)
    crop = align.transform_points(landmarks[17:], m)
    np.testing.assert_allclose(crop, align.MEAN_FACE * 160 + 48, atol=1e-6)


def test_pixel_shuffle_matches_keras_channel_order():
    x = np.arange(1 * 1 * 1 * 8, dtype=np.float32).reshape(1, 1, 1, 8)
    y = np.asarray(pixel_shuffle(x))
    assert y.shape == (1, 2, 2, 2)
    np.testing.assert_array_equal(y[0, :, :, 0], [[0, 2], [4, 6]])


def test_original_model_has_the_original_parameter_count():
    from flax import nnx

    model = FaceSwapModel(ModelSettings.from_preset("original"), rngs=nnx.Rngs(0))
    assert count_params(model) == 82_062_470


def test_source_ids_are_stable_and_readable():
    assert source_id("https://www.youtube.com/watch?v=UF8uR6Z6KLc").startswith("UF8uR6Z6KLc-")
    assert source_id("videos/alice talk.mp4").startswith("alice_talk-")
    assert source_id("a/x.mp4") != source_id("b/x.mp4")


def test_config_requires_swap_person_in_pair():
    config = {"people": {"a": {"sources": ["x"]}, "b": {"sources": ["y"]}, "c": {"sources": ["z"]}},
              "pairs": {"ab": {"a": "a", "b": "b"}},
              "swaps": {"s": {"pair": "ab", "video": "x", "from": "c"}}}
    with pytest.raises(FacepipeError, match=r"swaps\.s\.from: 'c' is not in pair 'ab'"):
        check_config(config, "cfg.yaml")


def test_params_schema_names_the_key():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["batch_size"] = "big"
    with pytest.raises(FacepipeError, match=r"^params.yaml: train.batch_size: 'big' is not of type 'integer'"):
        check_params(params)


def test_snakemake_lint_is_clean():
    proc = run([str(BIN / "snakemake"), "--lint"], ROOT, check=False)
    assert proc.returncode == 0 and "Congratulations" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_committed_dvc_yaml_is_generated_from_the_snakefile(monkeypatch):
    """dvc.yaml must not drift from the workflow: it is what `facepipe dvc-yaml` writes."""
    monkeypatch.chdir(ROOT)
    assert (ROOT / "dvc.yaml").read_text() == dvcstages.render([])


def test_training_losses_are_zero_only_for_identical_images():
    import jax.numpy as jnp

    from facepipe.train import image_loss

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(2, 64, 64, 3)), jnp.float32)
    y = jnp.asarray(np.clip(np.asarray(x) + rng.normal(0, 0.1, x.shape), 0, 1), jnp.float32)
    for kind in ("mae", "ssim-mse"):
        assert float(image_loss(x, x, kind)) < 1e-5
        assert float(image_loss(x, y, kind)) > 0.02


@pytest.mark.parametrize("preset, side", [("original-lowmem", 64), ("original-128", 128), ("tiny", 64)])
def test_presets_build_and_keep_the_resolution(preset, side):
    import jax.numpy as jnp
    from flax import nnx

    model = FaceSwapModel(ModelSettings.from_preset(preset), rngs=nnx.Rngs(0))
    assert model(jnp.zeros((1, side, side, 3)), "b").shape == (1, side, side, 3)
