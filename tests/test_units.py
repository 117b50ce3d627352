"""Library pieces checked directly: geometry, model shape, config checks, workflow files."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import yaml

from conftest import BIN, ROOT, run
from facepipe import align, dvcstages, faces, identity, tracking
from facepipe.config import check_config, check_params
from facepipe.errors import FacepipeError
from facepipe.models import FaceSwapModel, ModelSettings, count_params, pixel_shuffle
from facepipe.plan import source_id
from facepipe.settings import section


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


def test_committed_fingerprints_are_the_codes():
    """workflow/fingerprints/ must match the package (`facepipe fingerprints` writes them;
    Snakemake does too whenever it reads the workflow)."""
    from facepipe import stage_code

    for stage in stage_code.STAGES:
        path = ROOT / stage_code.FINGERPRINT_DIR / f"{stage}.txt"
        assert path.read_text() == stage_code.fingerprint_text(stage), f"{path}: run `facepipe fingerprints`"


def test_a_fingerprint_follows_the_code_not_its_comments(tmp_path, monkeypatch):
    from facepipe import stage_code

    package = tmp_path / "facepipe"
    shutil.copytree(ROOT / "src/facepipe", package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(stage_code, "PACKAGE_DIR", package)
    before = stage_code.fingerprints()
    models = package / "models.py"
    text = models.read_text()
    models.write_text(text.replace('"""', '"""Reworded. ', 1) + "\n# a comment\n\n\n")
    assert stage_code.fingerprints() == before
    models.write_text(text + "\nPROBE = 1\n")
    changed = {stage for stage, value in stage_code.fingerprints().items() if value != before[stage]}
    assert changed == {"train", "convert", "evaluate"}  # the stages that build or run a model


def test_committed_dvc_yaml_is_generated_from_the_snakefile(monkeypatch):
    """dvc.yaml must not drift from the workflow: it is what `facepipe dvc-yaml` writes."""
    monkeypatch.chdir(ROOT)
    assert (ROOT / "dvc.yaml").read_text() == dvcstages.render()


def test_training_losses_are_zero_only_for_identical_images_and_count_by_region():
    import jax.numpy as jnp

    from facepipe.losses import image_loss

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(2, 64, 64, 3)), jnp.float32)
    y = jnp.asarray(np.clip(np.asarray(x) + rng.normal(0, 0.1, x.shape), 0, 1), jnp.float32)
    labels = jnp.zeros((2, 64, 64), jnp.int32).at[:, 16:48, 16:48].set(1)
    for kind in ("mae", "ssim-l1"):
        assert float(image_loss(x, x, labels, kind, (1, 1, 1, 1))) < 1e-5
        assert float(image_loss(x, y, labels, kind, (1, 1, 1, 1))) > 0.02
    # An error outside the face counts a tenth as much when the background weighs 0.1 (the
    # loss is a weighted mean: 3072 background pixels at 0.1, 1024 face pixels at 1).
    outside = x.at[:, :8].set(1 - x[:, :8])
    weighted = float(image_loss(outside, x, labels, "mae", (0.1, 1, 1, 1)))
    assert weighted == pytest.approx(0.1 * 4096 / (0.1 * 3072 + 1024) * float(image_loss(outside, x, labels, "mae",
                                                                                        (1, 1, 1, 1))), rel=1e-4)


def test_the_learning_rate_grows_as_the_square_root_of_the_batch_after_a_warm_up():
    from facepipe.train import RECIPES, learning_rate

    settings = section(yaml.safe_load((ROOT / "params.yaml").read_text()), "train")
    settings = dataclasses.replace(settings, recipe="original", learning_rate=None, batch_size=16)
    assert learning_rate(settings) == RECIPES["original"].learning_rate  # 2017: constant, no warm-up
    big = learning_rate(dataclasses.replace(settings, batch_size=256))
    peak = 4 * RECIPES["original"].learning_rate
    assert float(big(0)) < peak / 50 and float(big(50)) == pytest.approx(peak / 2, rel=0.05)
    assert float(big(100)) == float(big(10_000)) == pytest.approx(peak)
    assert learning_rate(dataclasses.replace(settings, learning_rate=1e-3)) == 1e-3


def test_a_model_started_from_another_takes_each_persons_decoder():
    from facepipe.train import start_parts

    pair = {"a": "alice", "b": "bob"}
    assert start_parts("both", ("bob", "carol"), pair) == {"encoder": "encoder", "decoder_a": "decoder_b",
                                                            "decoder_b": "decoder_a"}
    assert start_parts("decoders", ("alice", "bob"), pair) == {"decoder_a": "decoder_a", "decoder_b": "decoder_b"}
    assert start_parts("encoder", ("x", "y"), pair) == {"encoder": "encoder"}
    pretrained = {"a": "pretrain", "b": "pretrain"}
    assert start_parts("both", ("x", "y"), pretrained) == {"encoder": "encoder", "decoder_a": "decoder_a",
                                                           "decoder_b": "decoder_b"}


@pytest.mark.parametrize("preset, side", [pytest.param("original-lowmem", 64, marks=pytest.mark.slow),
                                          pytest.param("original-128", 128, marks=pytest.mark.slow),
                                          ("lite", 64), pytest.param("tiny", 64, marks=pytest.mark.slow)])
def test_presets_build_and_keep_the_resolution(preset, side):
    import jax.numpy as jnp
    from flax import nnx

    model = FaceSwapModel(ModelSettings.from_preset(preset), rngs=nnx.Rngs(0))
    assert model(jnp.zeros((1, side, side, 3)), "b").shape == (1, side, side, 3)


def _head_landmarks(yaw: float, focal: float = 256) -> np.ndarray:
    """68 landmarks (only the six the pose uses are set) of the generic head turned by `yaw`."""
    turn = np.radians(yaw)
    rotation = np.array([[np.cos(turn), 0, np.sin(turn)], [0, 1, 0], [-np.sin(turn), 0, np.cos(turn)]])
    points = faces.HEAD_MODEL @ rotation.T * [1, -1, -1] + [0, 0, 1000]  # camera: y down, z forward
    landmarks = np.zeros((68, 2))
    landmarks[faces.HEAD_POINTS] = points[:, :2] / points[:, 2:] * focal + 128
    return landmarks


@pytest.mark.parametrize("yaw", [-40, -10, 0, 25, 60])
def test_head_pose_reads_the_yaw_off_the_landmarks(yaw):
    landmarks = _head_landmarks(yaw)
    measured, pitch = faces.head_pose(landmarks, 256, 256)
    assert abs(measured - yaw) < 1 and abs(pitch) < 1
    nose_offset = landmarks[30, 0] - (landmarks[36, 0] + landmarks[45, 0]) / 2
    assert np.sign(nose_offset) == np.sign(yaw)  # positive: the nose points to the image's right


def test_tracks_survive_short_gaps_and_end_at_cuts():
    tracker = tracking.Tracker(max_gap=2)
    left, right = np.array([10.0, 10, 60, 60]), np.array([200.0, 10, 250, 60])
    first = tracker.assign(0, [left, right])
    assert tracker.assign(1, [right + 3, left + 3]) == first[::-1]  # order in the frame does not matter
    assert tracker.assign(2, [left + 6]) == first[:1]  # the right face missed in this frame
    assert tracker.assign(4, [left + 9, right + 6]) == first  # ... and back within max_gap
    assert tracker.assign(7, [left + 9])[0] == first[0]  # two frames missed: still the same
    assert tracker.assign(9, [right + 6])[0] not in first  # gone too long: a new track
    tracker.cut()
    assert tracker.assign(10, [left + 9])[0] not in first  # a shot cut ends every track


def test_smoothing_fits_quadratic_motion_exactly_and_damps_noise():
    offsets = tuple(range(-9, 10))
    weights = tracking.smoothing_weights(offsets, 3.0)
    t = np.array(offsets, float)
    for path in (np.full_like(t, 7.0), 3 * t + 1, 0.5 * t ** 2 - t + 2):
        assert abs(weights @ path - path[9]) < 1e-9
    assert np.sum(weights ** 2) < 0.25  # white noise variance cut by more than 4x


def test_identity_is_judged_per_track_from_its_samples():
    faces_ = [{"track": 0, "frame": f} for f in range(10)] + [{"track": 1, "frame": f} for f in range(10)]
    samples = identity.sample(faces_, fps=10, interval=0.3)
    assert [faces_[i]["frame"] for i in samples] == [0, 3, 6, 9, 0, 3, 6, 9]
    embeddings = np.zeros((8, 128))
    embeddings[2, 0] = 0.9  # one bad embedding on track 0
    embeddings[4:, 0] = 0.8  # track 1 is someone else
    distances = identity.distances_to(faces_, samples, embeddings, np.zeros(128))
    assert distances[:10] == [0.0] * 10 and distances[10:] == [0.8] * 10
    labels = identity.clusters_of(faces_, samples, embeddings, max_distance=0.5)
    assert len(set(labels[:10])) == 1 and len(set(labels[10:])) == 1 and labels[0] != labels[10]


@pytest.mark.parametrize("stride, kernel", [(2, 5), (1, 3)])
def test_conv_as_matmul_equals_the_conv(stride, kernel):
    import jax.numpy as jnp
    from flax import nnx

    from facepipe.models import conv_as_matmul

    conv = nnx.Conv(32, 48, (kernel, kernel), strides=stride, padding="SAME", rngs=nnx.Rngs(0))
    conv.bias[...] = jnp.linspace(-1, 1, 48)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8, 32)), jnp.float32)
    np.testing.assert_allclose(conv_as_matmul(conv, x, stride), conv(x), rtol=1e-5, atol=1e-5)

    def grads(forward):
        return nnx.grad(lambda conv, x: jnp.sum(jnp.sin(forward(conv, x))), argnums=(0, 1))(conv, x)

    (plain_params, plain_x), (params, dx) = grads(lambda conv, x: conv(x)), grads(
        lambda conv, x: conv_as_matmul(conv, x, stride))
    np.testing.assert_allclose(dx, plain_x, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(params.kernel[...], plain_params.kernel[...], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(params.bias[...], plain_params.bias[...], rtol=1e-4, atol=1e-5)


def test_outputs_get_the_modes_of_any_new_file(tmp_path):
    """Atomic outputs start private (mkstemp/mkdtemp) but must not end up so: others
    sharing the project or the DVC cache need to read them."""
    import os

    from facepipe.fsutil import atomic_dir, write_json

    write_json(tmp_path / "out.json", {"a": 1})
    with atomic_dir(tmp_path / "folder") as folder:
        (folder / "x").write_text("x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~umask


def test_frame_rates_as_ffmpeg_prints_them():
    from fractions import Fraction

    from facepipe.media import parse_fps

    assert parse_fps("29.97") == Fraction(30000, 1001) and parse_fps("25") == 25 and parse_fps("1k") == 1000


def test_names_never_start_like_an_option():
    assert not source_id("videos/-clip.mp4").startswith("-")
    config = {"people": {"-bob": {"sources": ["x"]}, "b": {"sources": ["y"]}},
              "pairs": {"ab": {"a": "-bob", "b": "b"}}, "swaps": {}}
    with pytest.raises(FacepipeError, match=r"people: .-bob. is not a valid name: .*not starting with"):
        check_config(config, "cfg.yaml")


def test_a_holdout_of_zero_is_refused_by_name():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["filter"]["holdout"] = 0
    with pytest.raises(FacepipeError, match=r"^params.yaml: filter.holdout: 0 is less than or equal to the minimum"):
        check_params(params)


def test_photos_that_would_share_an_output_name_are_refused(tmp_path):
    from facepipe.convert import PhotoWriter
    from facepipe.tagging import SYNTHETIC_TAGS

    with pytest.raises(FacepipeError, match=r"photos a\.png and a\.bmp would both be written as a\.png"):
        PhotoWriter(tmp_path / "out", ["a.png", "a.bmp"], SYNTHETIC_TAGS)
    assert PhotoWriter(tmp_path / "out", ["a.png", "a.bmp"], {}).names == ["a.png", "a.bmp"]  # untagged: kept


def test_stage_modules_talk_through_files_not_through_each_other():
    """A stage module imports the format owners, media, models and library modules, never
    another stage's module (only the command line dispatches to all of them)."""
    from facepipe import stage_code

    package = ROOT / "src/facepipe"
    modules = [".".join(p.relative_to(package).with_suffix("").parts) for p in package.rglob("*.py")]
    own = {module: stage for stage in stage_code.STAGES for module in stage_code.ENTRY_MODULES.get(stage, (stage,))}
    crossings = {module: sorted(set(stage_code.imported_modules(module)) & set(stage_code.STAGES) - {own.get(module)})
                 for module in modules if module not in ("cli", "__main__")}
    assert {module: stages for module, stages in crossings.items() if stages} == {}
    assert "formats.alignments" in stage_code.modules("convert") and "detect" not in stage_code.modules("convert")
