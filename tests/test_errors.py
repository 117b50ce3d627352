"""Bad input: one clear line naming the item, before long work, nothing built lost."""

from __future__ import annotations

import json
import subprocess

import yaml

from conftest import copy_project, earlier_output, make_project, pair_config, snakemake
from facepipe.media import FFMPEG


def error_lines(proc) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if "error:" in line]


def dry_run_error(project) -> str:
    proc = snakemake(project, "-n", check=False)
    assert proc.returncode != 0
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stdout + proc.stderr
    return lines[0]


def test_missing_source_file(media, tmp_path):
    config = pair_config()
    config["people"]["woman_b"]["sources"].append("videos/missing.mp4")
    line = dry_run_error(make_project(tmp_path / "p", config))
    assert "people.woman_b.sources[1]" in line and "videos/missing.mp4 not found" in line


def test_invalid_person_name(media, tmp_path):
    config = pair_config()
    config["people"]["bad name!"] = config["people"].pop("woman_b")
    line = dry_run_error(make_project(tmp_path / "p", config))
    assert "'bad name!' is not a valid name" in line and "config" in line


def test_negative_fps(media, tmp_path):
    line = dry_run_error(make_project(tmp_path / "p", pair_config(), {"frames": {"fps": -5}}))
    assert "params.yaml: frames.fps" in line and "-5" in line


def test_swap_naming_unknown_pair(media, tmp_path):
    config = pair_config()
    config["swaps"]["wa_as_wb"]["pair"] = "nobody"
    line = dry_run_error(make_project(tmp_path / "p", config))
    assert "swaps.wa_as_wb.pair" in line and "unknown pair 'nobody'" in line and "wa_wb" in line


def _add_person(project, name, source):
    config = yaml.safe_load((project / "config/config.yaml").read_text())
    config["people"][name] = {"sources": [str(source)]}
    config["pairs"][f"{name}_pair"] = {"a": "woman_a", "b": name}
    (project / "config/config.yaml").write_text(yaml.safe_dump(config))


def test_text_file_named_mp4_keeps_what_was_built(built, tmp_path):
    project = copy_project(built, tmp_path / "p")
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is not a video\n")
    _add_person(project, "faker", fake)
    weights = (project / "results/models/wa_wb/weights.msgpack").read_bytes()
    proc = snakemake(project, check=False)
    assert proc.returncode != 0
    lines = [line for line in error_lines(proc) if "facepipe" in line]
    assert lines and "fake.mp4: not a readable video" in lines[0], proc.stdout + proc.stderr
    assert (project / "results/models/wa_wb/weights.msgpack").read_bytes() == weights
    assert (project / "results/swaps/wa_as_wb.mp4").is_file()
    assert not list((project / "results/download").glob("fake-*"))


def test_video_without_faces_says_how_many_and_where(built, tmp_path):
    project = copy_project(built, tmp_path / "p")
    empty = tmp_path / "wall.mp4"
    subprocess.run([FFMPEG, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10",
                    "-t", "2", "-pix_fmt", "yuv420p", str(empty)], check=True)
    _add_person(project, "nobody", empty)
    proc = snakemake(project, "results/datasets/nobody", check=False)
    assert proc.returncode != 0
    lines = [line for line in error_lines(proc) if "facepipe filter" in line]
    assert lines, proc.stdout + proc.stderr
    assert "person 'nobody' has no usable faces" in lines[0]
    assert f"{empty}: 0 faces in 10 frames" in lines[0]
    assert (project / "results/models/wa_wb/weights.msgpack").is_file()


def test_convert_refuses_a_model_trained_on_other_alignments(built, tmp_path):
    from conftest import BIN, ROOT, run

    model = tmp_path / "model"
    model.mkdir()
    for name in ("weights.msgpack", "model.json"):
        (model / name).write_bytes((built / "results/models/wa_wb" / name).read_bytes())
    info = json.loads((model / "model.json").read_text())
    info["padding_fraction"] = 0.25
    (model / "model.json").write_text(json.dumps(info))
    out = tmp_path / "swap.mp4"
    untouched = earlier_output(out)
    proc = run([str(BIN / "facepipe"), "convert", "--params", str(ROOT / "params.yaml"),
                "--frames", "results/frames/swaps/wa_as_wb", "--faces", "results/faces/swaps/wa_as_wb",
                "--model", str(model), "--from", "woman_a", "--source-dataset", "results/datasets/woman_a",
                "--out", str(out)], built, check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and last.startswith("facepipe convert: error:")
    assert "margin of 0.25" in last and "0.1875" in last
    untouched()


def test_unknown_colour_method_stops_before_any_work(built, tmp_path):
    project = copy_project(built, tmp_path / "p")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["convert"]["color_match"] = "magic"
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    line = dry_run_error(project)
    assert "params.yaml: convert.color_match: 'magic' is not one of" in line and "avg-color" in line


def test_a_frame_range_without_faces_is_refused_before_decoding(built, tmp_path):
    from conftest import BIN, ROOT, run

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["convert"]["frame_ranges"] = [[70, 80]]  # the clip has 60 frames
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "out" / "swap.mp4"
    untouched = earlier_output(out)
    command = [str(BIN / "facepipe"), "convert", "--params", str(tmp_path / "params.yaml"),
               "--frames", "results/frames/swaps/wa_as_wb", "--faces", "results/faces/swaps/wa_as_wb",
               "--model", "results/models/wa_wb", "--from", "woman_a", "--source-dataset", "results/datasets/woman_a",
               "--out", str(out)]
    proc = run(command, built, check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and "convert.frame_ranges: [70, 80] is not within the clip's frames 0-59" in last
    params["convert"]["frame_ranges"] = [[5, 5]]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    faces = tmp_path / "faces"  # the same clip, with no face found in frame 5
    faces.mkdir()
    alignments = json.loads((built / "results/faces/swaps/wa_as_wb/alignments.json").read_text())
    alignments["faces"] = [f for f in alignments["faces"] if f["frame"] != 5]
    (faces / "alignments.json").write_text(json.dumps(alignments))
    proc = run(command[:7] + [str(faces)] + command[8:], built, check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and "no faces in" in last and "convert.frame_ranges" in last
    assert "convert swap:" not in proc.stderr  # refused before the first frame
    untouched()


def test_an_empty_config_broken_yaml_or_a_nan_is_one_line(media, tmp_path):
    """Found by the fault campaign (benchmarks/faults.py): Snakemake's own message for an
    empty config was a block; JSON Schema's bounds let NaN through; a swap 1e308 s long
    was a traceback in frames; an alias bomb hung the check and deep nesting broke the
    YAML reader."""
    project = make_project(tmp_path / "p", pair_config())
    (project / "config/config.yaml").write_text("")
    assert dry_run_error(project) == "facepipe: error: config/config.yaml: empty; it needs people, pairs and swaps " \
                                     "(README, Quick start)"
    (project / "config/config.yaml").write_text("people: [\n")
    assert "config/config.yaml: not valid YAML" in dry_run_error(project)
    config = pair_config()
    config["swaps"]["wa_as_wb"]["duration"] = float("nan")
    (project / "config/config.yaml").write_text(yaml.safe_dump(config))
    assert dry_run_error(project).endswith("config/config.yaml: swaps.wa_as_wb.duration: nan is not a finite number")
    (project / "config/config.yaml").write_text(yaml.safe_dump(pair_config()))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["convert"]["mask_blur"] = float("inf")
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert dry_run_error(project).endswith("params.yaml: convert.mask_blur: inf is not a finite number")
    (project / "params.yaml").write_text(yaml.safe_dump(dict(params, convert=dict(params["convert"], mask_blur=0.06))))
    config["swaps"]["wa_as_wb"]["duration"] = 1e308
    (project / "config/config.yaml").write_text(yaml.safe_dump(config))
    assert "config/config.yaml: swaps.wa_as_wb.duration: 1e+308 is greater than the maximum" in dry_run_error(project)
    (project / "config/config.yaml").write_text(yaml.safe_dump(pair_config()))
    bomb = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    bomb += [f"a{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(9))}]" for i in range(1, 10)]
    (project / "params.yaml").write_text("\n".join(bomb) + "\n")
    assert "params.yaml: more than 100000 values once its aliases" in dry_run_error(project)  # at once, not hung
    (project / "params.yaml").write_text("deep: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "params.yaml: nested too deeply to read" in dry_run_error(project)
