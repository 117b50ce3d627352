"""The fault campaign (run by hand: `python benchmarks/faults.py`; `--small` is the
seeded short version the test suite runs).

Part `fuzz`: seeded mutations of a valid config and params.yaml (wrong types, numbers
out of range, missing and unknown keys, empty lists, unicode, very long and hostile
names, `../` paths, shell metacharacters and quotes in names, URLs and paths, YAML
anchors, tags and huge documents, broken YAML). Each goes through real Snakemake (a
dry run of the whole build: the config and params are checked as a build checks them)
and must be planned, or refused with one line naming the file. Counted: what was
accepted, refused in one line, refused unclearly (with what), tracebacks and shell
injections (a canary file that a successful injection would create), each of which
must be 0.

Part `kills`: for every stage, `kill -9` of one of its jobs (and, separately, SIGINT of
`snakemake`'s process group, as Ctrl-C sends it) at seeded random moments: an item of
the job's progress bar, or the writing of its outputs after the last, or (no bar yet) a
moment of its reference run; then a rerun. A training is interrupted between its last
checkpoint and its end. The rerun's outputs are compared with those of an uninterrupted
build of the same project (`--reference`, or one built first). Counted: reruns that
completed, outputs byte-identical (training time aside), outputs that look done but are
not (a file at an output's path that differs after the interruption: must be 0),
training steps lost (at most one checkpoint interval), processes and temporary files
left behind.

Part `disk`: a stage's job with results/ on a tmpfs holding what was built before and
half of what the job writes (frames, detect, train's checkpoints, convert): one line
naming the file system and the space, nothing built before damaged, and with the
tmpfs grown, a rerun that completes with the same bytes. Needs root (mount).

Part `media` (fault_media.py): media people really have (phone videos turned by
metadata, variable frame rate, several audio tracks, sound only, empty, cut short,
random bytes, 1x1, 8K, a 10-hour video's first minute, photos of mixed sizes) as swaps:
each works (measured) or is refused in one line naming the file.

Part `two_runs`: a second `snakemake` in the folder of a running build: refused in one
line; the first finishes with the same bytes.

The last line is one JSON object of counts."""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import copy
import dataclasses
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import make_project as make_tiny_project  # noqa: E402
from conftest import pair_config  # noqa: E402  (the tests' valid config: woman_a <-> woman_b)
from fault_media import media_part  # noqa: E402

BIN = Path(sys.executable).parent
CONFIG = "config/config.yaml"
PARAMS = "params.yaml"
TRACEBACK = "Traceback (most recent call last)"
# A dry run that takes longer than this has hung (a huge document, an alias bomb).
DRY_RUN_LIMIT = 120


@dataclass
class Mutation:
    kind: str
    file: str  # CONFIG or PARAMS
    text: str  # the file's new content
    key: str  # the key changed ("" for the whole document)


def make_project(folder: Path, media: Path) -> Path:
    """A project as a user has one: this repository's workflow, its params.yaml, a
    config naming the test media through a `media` link."""
    folder.mkdir(parents=True)
    (folder / "media").symlink_to(media, target_is_directory=True)
    shutil.copy(ROOT / "Snakefile", folder)
    shutil.copytree(ROOT / "workflow", folder / "workflow")
    shutil.copy(ROOT / PARAMS, folder)
    (folder / "config").mkdir()
    (folder / CONFIG).write_text(yaml.safe_dump(pair_config(), sort_keys=False))
    return folder


def hostile_strings(canary: Path) -> list[str]:
    """Names, paths and URLs that a careless program would run, follow or choke on."""
    touch = f"touch {canary}"
    return [
        f"$({touch})", f"`{touch}`", f"a; {touch}", f"a && {touch} #", f"a | {touch}", f"'; {touch}; '",
        f'"; {touch}; "', f"--exec={touch}", f"-o/tmp/x --exec '{touch}'", f"x\n{touch}", f"a'b\"c $HOME {touch}",
        "../../../../etc/passwd", "../outside", "/dev/zero", "/dev/stdin", "/", ".", "",
        "file:///etc/passwd", f"http://127.0.0.1:9/$({touch})", f"https://example.invalid/watch?v=x;{touch}",
        "ftp://127.0.0.1:9/x.mp4", "ytsearch:anything", "名前", "Ωμέγα", "🙂", "e\u0301", "\u202eevil",
        "a" * 5000, "-rf", "--help", "NUL", "con", " leading space", "trailing space ", "tab\there", "x\x00y",
    ]


def leaves(data, path=()) -> list[tuple]:
    """Every key path of a loaded YAML document."""
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            found.append(path + (key,))
            found += leaves(value, path + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found.append(path + (index,))
            found += leaves(value, path + (index,))
    return found


def parent_of(data, path):
    for part in path[:-1]:
        data = data[part]
    return data


def key_name(path) -> str:
    return ".".join(str(part) for part in path)


OTHER_VALUES = ["text", 7, -3, 0, 2.5, True, None, [], {}, [1, "x"], {"k": "v"}, "1e3", "yes", ".nan"]
NUMBERS = [-1, 0, -1e9, 1e308, float("inf"), float("-inf"), float("nan"), 2**63, 0.5, 1e-300, -0.0]


KINDS = ("type", "range", "missing", "unknown", "empty", "name", "path", "yaml")


def mutate(rng: random.Random, canary: Path, kind: str | None = None) -> Mutation:
    """A mutation of `kind`, or of a kind drawn at random."""
    config, params = pair_config(), yaml.safe_load((ROOT / PARAMS).read_text())
    kind = kind or rng.choice(KINDS)
    file = CONFIG if kind in ("name", "path") else rng.choice([CONFIG, PARAMS])
    data = config if file == CONFIG else params
    if kind == "yaml":
        return yaml_mutation(rng, file, data, canary)
    paths = leaves(data)
    if kind == "type":
        path = rng.choice(paths)
        parent_of(data, path)[path[-1]] = copy.deepcopy(rng.choice(OTHER_VALUES))
    elif kind == "range":
        numeric = [p for p in paths if isinstance(parent_of(data, p)[p[-1]], (int, float))
                   and not isinstance(parent_of(data, p)[p[-1]], bool)] or paths
        path = rng.choice(numeric)
        parent_of(data, path)[path[-1]] = rng.choice(NUMBERS)
    elif kind == "missing":
        path = rng.choice(paths)
        del parent_of(data, path)[path[-1]]
    elif kind == "unknown":
        mappings = [()] + [p for p in paths if isinstance(parent_of(data, p)[p[-1]], dict)]
        path = rng.choice(mappings)
        target = data if not path else parent_of(data, path)[path[-1]]
        name = rng.choice(["extra", "Fps", "stepz", "__class__", rng.choice(hostile_strings(canary))])
        target[name] = rng.choice(OTHER_VALUES)
        path = path + (name,)
    elif kind == "empty":
        containers = [p for p in paths if isinstance(parent_of(data, p)[p[-1]], (dict, list))] or paths
        path = rng.choice(containers)
        parent_of(data, path)[path[-1]] = rng.choice([[], {}, "", None])
    elif kind == "name":  # a person, pair or swap renamed, and every mention of it
        section_name = rng.choice(["people", "pairs", "swaps"])
        old = rng.choice(list(config[section_name]))
        new = rng.choice(hostile_strings(canary))
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
        config = yaml.safe_load(text.replace(f"{old}:", f"{json.dumps(new)}:").replace(f": {old}\n", f": {json.dumps(new)}\n"))
        path = (section_name, new)
    else:  # a source, a reference photo or a swap's video
        hostile = rng.choice(hostile_strings(canary))
        where = rng.choice(["source", "reference", "video", "pretrain"])
        if where == "source":
            config["people"]["woman_a"]["sources"][0] = hostile
            path = ("people", "woman_a", "sources", 0)
        elif where == "reference":
            config["people"]["woman_b"]["reference"] = hostile
            path = ("people", "woman_b", "reference")
        elif where == "video":
            config["swaps"]["wa_as_wb"]["video"] = hostile
            path = ("swaps", "wa_as_wb", "video")
        else:
            config["pretrain"] = {"sources": [hostile]}
            path = ("pretrain", "sources", 0)
    text = yaml.safe_dump(data if file == PARAMS else config, sort_keys=False, allow_unicode=rng.random() < 0.5)
    return Mutation(kind, file, text, key_name(path))


def yaml_mutation(rng: random.Random, file: str, data: dict, canary: Path) -> Mutation:
    """Documents that are not what a YAML mapping of ours should be."""
    text = yaml.safe_dump(data, sort_keys=False)
    choice = rng.choice(["anchors", "alias_bomb", "huge", "deep", "python_tag", "broken", "tabs", "not_mapping",
                         "empty", "binary", "duplicate_key", "bom"])
    if choice == "anchors":  # legal anchors and merge keys: the same data, written another way
        first = text.splitlines()[0]
        text = text.replace(first, f"{first} &top", 1) if first.endswith(":") else text
    elif choice == "alias_bomb":  # a billion laughs: small to read, exponential when expanded
        lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
        lines += [f"a{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(9))}]" for i in range(1, 10)]
        text = text + "\n".join(lines) + "\n"
    elif choice == "huge":
        text = text + "bulk:\n" + "".join(f"  - {'x' * 100}\n" for _ in range(200_000))
    elif choice == "deep":
        text = text + "deep: " + "[" * 5000 + "]" * 5000 + "\n"
    elif choice == "python_tag":  # an unsafe loader would run this
        text = text + f'evil: !!python/object/apply:os.system ["touch {canary}"]\n'
    elif choice == "broken":
        cut = rng.randrange(1, len(text))
        text = text[:cut] + rng.choice([": : :", "\n  - [", "{", "'unclosed", "\n\t-", "*undefined_alias"]) + text[cut:]
    elif choice == "tabs":
        text = text.replace("  ", "\t")
    elif choice == "not_mapping":
        text = rng.choice(["- a\n- b\n", "just a string\n", "42\n", "null\n", "[]\n"])
    elif choice == "empty":
        text = ""
    elif choice == "binary":
        text = bytes(rng.randrange(256) for _ in range(2000)).decode("latin-1")
    elif choice == "duplicate_key":
        text = text + text.splitlines()[0] + "\n"
    else:
        text = "\ufeff" + text
    return Mutation(f"yaml:{choice}", file, text, "")


@dataclass
class Outcome:
    mutation: Mutation
    verdict: str  # accepted, refused, unclear, traceback, hung
    injected: bool
    line: str
    seconds: float
    built: bool | None = None  # an accepted config's footage extracted (the full campaign)


def snakemake(project: Path, *args: str) -> tuple[int | None, str]:
    try:
        proc = subprocess.run([str(BIN / "snakemake"), "--cores", "1", *args], cwd=project, capture_output=True,
                              text=True, errors="replace", timeout=DRY_RUN_LIMIT)
        return proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired:
        return None, ""


def judge(code: int | None, output: str, file: str) -> tuple[str, str]:
    """A refusal is one line of facepipe's (a job that fails also gets Snakemake's
    account of the job around it, which names the rule and its log)."""
    errors = [line for line in output.splitlines() if line.startswith("facepipe") and "error:" in line]
    if code is None:
        return "hung", ""
    if TRACEBACK in output:
        return "traceback", output[-1500:]
    if code == 0:
        return "accepted", ""
    if len(errors) == 1 and file in errors[0]:
        return "refused", errors[0]
    return "unclear", output[-1500:]


def try_mutation(project: Path, mutation: Mutation, canary: Path, build: bool) -> Outcome:
    """Snakemake's dry run of the whole build with the mutated file in place; with
    `build`, an accepted config's footage is then downloaded and extracted for real
    (what a config controls: sources, names, swap ranges), and any error there must be
    one line too."""
    shutil.rmtree(project / "results", ignore_errors=True)
    shutil.copy(ROOT / PARAMS, project / PARAMS)
    (project / CONFIG).write_text(yaml.safe_dump(pair_config(), sort_keys=False))
    (project / mutation.file).write_bytes(mutation.text.encode("utf-8", errors="surrogateescape"))
    canary.unlink(missing_ok=True)
    started = time.monotonic()
    verdict, line = judge(*snakemake(project, "-n"), mutation.file)
    built = None
    if build and verdict == "accepted" and mutation.file == CONFIG:
        code, output = snakemake(project, "--until", "frames")
        built = code == 0
        if not built:
            verdict, line = judge(code, output, "")
    injected = canary.exists() or (project / canary.name).exists()
    return Outcome(mutation, verdict, injected, line, time.monotonic() - started, built)


def fuzz(work: Path, media: Path, count: int, seed: int, workers: int, small: bool) -> dict:
    """`count` seeded mutations; the small version takes every kind in turn (a few
    mutations still cover them all) and builds nothing."""
    rng = random.Random(seed)
    canaries = [work / f"canary-{i}" for i in range(workers)]
    projects = [make_project(work / f"fuzz-{i}", media) for i in range(workers)]
    mutations = [mutate(rng, canaries[i % workers], KINDS[i % len(KINDS)] if small else None) for i in range(count)]
    build = not small
    outcomes: list[Outcome] = []
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        def job(slot: int) -> list[Outcome]:
            return [try_mutation(projects[slot], m, canaries[slot], build) for m in mutations[slot::workers]]

        for results in pool.map(job, range(workers)):
            outcomes += results
    verdicts = collections.Counter(o.verdict for o in outcomes)
    problems = [o for o in outcomes if o.verdict in ("unclear", "traceback", "hung") or o.injected]
    for outcome in problems[:20]:
        print(f"fuzz {outcome.verdict}{' INJECTED' if outcome.injected else ''}: {outcome.mutation.kind} "
              f"{outcome.mutation.file} {outcome.mutation.key[:80]!r}\n{outcome.line}\n", file=sys.stderr)
    return {"mutations": len(outcomes), "accepted": verdicts["accepted"],
            "accepted_configs_built": sum(o.built is True for o in outcomes), "refused_one_line": verdicts["refused"],
            "refused_unclear": verdicts["unclear"], "tracebacks": verdicts["traceback"], "hung": verdicts["hung"],
            "injections": sum(o.injected for o in outcomes),
            "kinds": dict(sorted(collections.Counter(o.mutation.kind.split(":")[0] for o in outcomes).items())),
            "seconds_per_mutation": round(sum(o.seconds for o in outcomes) / max(1, len(outcomes)), 2)}


# --- kills

STAGES = ["download", "frames", "detect", "filter", "train", "convert", "evaluate"]
# How long Snakemake may take to stop after an interruption, and a rerun to finish.
STOP_LIMIT, RERUN_LIMIT = 120, 900
# Written with the time it took: compared without these keys.
TIMED = {"results/models/wa_wb/metrics.json": ("steps_this_run", "seconds_this_run")}


@dataclass
class Job:
    rule: str
    outputs: list[str]
    log: str
    seconds: float  # how long it ran in the reference build


def reference_jobs(project: Path) -> dict[str, list[Job]]:
    """Each rule's jobs in the build of `project`, from Snakemake's log of it: outputs and
    the time each took (so an interruption can fall anywhere in a job's run)."""
    logs = sorted((project / ".snakemake/log").glob("*.snakemake.log"))
    text = max((p.read_text() for p in logs), key=lambda t: t.count("Finished jobid"))
    stamp = r"\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]\n"

    def when(text: str) -> float:
        return time.mktime(time.strptime(text, "%a %b %d %H:%M:%S %Y"))

    started = {m["job"]: (m["rule"], m["outputs"].split(", "), m["log"], when(m["at"])) for m in re.finditer(
        stamp.replace("(", "(?P<at>", 1) + r"(?:local)?rule (?P<rule>\w+):\n(?:    (?!output:).*\n)*"
        r"    output: (?P<outputs>.*)\n    log: (?P<log>.*)\n(?:    .*\n)*?    jobid: (?P<job>\d+)", text)}
    jobs: dict[str, list[Job]] = collections.defaultdict(list)
    for m in re.finditer(stamp + r"Finished jobid: (\d+) \(Rule: (\w+)\)", text):
        if m[2] not in started:  # a rule without outputs (all)
            continue
        rule, outputs, log, at = started[m[2]]
        jobs[rule].append(Job(rule, outputs, log, max(1.0, when(m[1]) - at)))
    return jobs


def snapshot(project: Path, outputs: list[str]) -> dict[str, bytes]:
    """Every file of `outputs` (files or folders) and its bytes, timed keys left out."""
    files = {}
    for output in outputs:
        path = project / output
        for file in sorted(path.rglob("*")) if path.is_dir() else [path] if path.exists() else []:
            if file.is_file():
                name = str(file.relative_to(project))
                data = file.read_bytes()
                if name in TIMED:
                    loaded = json.loads(data)
                    data = json.dumps({k: v for k, v in loaded.items() if k not in TIMED[name]}).encode()
                files[name] = data
    return files


def job_process(session: psutil.Process, rule: str) -> psutil.Process | None:
    """The job's own process: `facepipe <rule> ...` below Snakemake."""
    for proc in session.children(recursive=True):
        try:
            args = proc.cmdline()
        except psutil.Error:
            continue
        if any(Path(a).name == "facepipe" and args[i + 1:i + 2] == [rule] for i, a in enumerate(args)):
            return proc
    return None


def temporary_files(project: Path) -> set[str]:
    """What atomic writes leave behind when killed: hidden files beside outputs."""
    return {str(p.relative_to(project)) for p in (project / "results").rglob(".*")}


def kill_trial(project: Path, reference: dict[str, bytes], job: Job, signal_name: str, moment: float,
               training: dict) -> dict:
    """Run `job` again, interrupt it at `moment` (0-1) of its run, rerun; what was left,
    what the rerun made. A training's moment is a step between its checkpoint and its end,
    or (past the end) while it writes the model."""
    target = job.outputs[0]
    checkpoints = project / "results/checkpoints" / Path(target).parts[2] if job.rule == "train" else None
    if checkpoints:  # a training in progress: from its checkpoint before the last, as if resumed
        shutil.rmtree(checkpoints / "steps" / str(max(saved_steps(checkpoints))))
    temporary_before = temporary_files(project)
    (project / job.log).unlink(missing_ok=True)
    with open(project / "interrupted.log", "w") as out:
        proc = subprocess.Popen([str(BIN / "snakemake"), "--cores", "2", "--force", target], cwd=project,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    session = psutil.Process(proc.pid)
    seen, deadline = None, time.monotonic() + STOP_LIMIT
    while seen is None and proc.poll() is None and time.monotonic() < deadline:
        seen = job_process(session, job.rule)
        time.sleep(0.02)
    landed, reached, saved, seen_at = False, 0, [], time.monotonic()
    if seen is not None:
        # At a moment of the job's reference run; once its progress bar shows, at an item
        # of it instead, or (past the last) while it writes its outputs.
        first = max(saved_steps(checkpoints)) if checkpoints else 0
        deadline = time.monotonic() + moment * job.seconds
        while seen.is_running() and progress(project, job) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        bar = progress(project, job)
        if bar:
            at = first + 1 + int(moment * (bar[1] - first + 1))
            while seen.is_running() and progress(project, job)[0] < min(at, bar[1]):
                time.sleep(0.02)
        checked_at = time.monotonic()  # for a missed moment: the job had ended by then
        if seen.is_running() and proc.poll() is None:
            landed = True
            if checkpoints:
                bar_now = progress(project, job)
                reached, saved = bar_now[0] if bar_now else first, saved_steps(checkpoints)
            if signal_name == "SIGKILL":
                seen.kill()
            else:
                os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(STOP_LIMIT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    left = [p for p in psutil.process_iter(["cwd"]) if p.info["cwd"] == str(project)]  # the job's orphans
    for p in left:
        p.kill()
    # An output at its path after the interruption must be the finished one.
    after = snapshot(project, job.outputs)
    half_written = sorted(name for name, data in after.items() if reference.get(name) != data)
    rerun = subprocess.run([str(BIN / "snakemake"), "--cores", "2", target], cwd=project, capture_output=True,
                           text=True, timeout=RERUN_LIMIT)
    output = rerun.stdout + rerun.stderr
    interrupted = (project / "interrupted.log").read_text(errors="replace")
    result = {"rule": job.rule, "signal": signal_name, "landed": landed, "completed": rerun.returncode == 0,
              "job_seconds": None if landed or seen is None else round(checked_at - seen_at, 2),
              "traceback": TRACEBACK in interrupted + output,
              "identical": snapshot(project, job.outputs) == reference, "half_written": half_written,
              "processes_left": len(left), "temporary_left": sorted(temporary_files(project) - temporary_before)}
    if checkpoints and landed and re.search(r"^(local)?rule train:$", output, re.MULTILINE):
        resumed = re.search(r"resuming from step (\d+) of", output)
        resumed_from = int(resumed[1]) if resumed else 0
        result.update(step_reached=reached, resumed_from=resumed_from, steps_lost=max(0, reached - resumed_from),
                      resumed_from_latest=resumed_from >= max(saved, default=0))
    elif checkpoints and landed:  # the interrupted job had finished its training: nothing to redo
        result.update(step_reached=reached, steps_lost=0, resumed_from_latest=True, finished_before_stopping=True)
    if rerun.returncode != 0:
        result["rerun_error"] = output[-1500:]
    return result


def progress(project: Path, job: Job) -> tuple[int, int] | None:
    """Where the job's progress bar is (its log, through tee): items done, items in all."""
    log = project / job.log
    bars = re.findall(r" (\d+)/(\d+) \[", log.read_text(errors="replace")) if log.exists() else []
    return (int(bars[-1][0]), int(bars[-1][1])) if bars else None


def saved_steps(checkpoints: Path) -> list[int]:
    return [int(p.name) for p in (checkpoints / "steps").iterdir() if p.name.isdigit()]


def build_reference(work: Path, media: Path) -> Path:
    """An uninterrupted build of the tests' tiny woman_a <-> woman_b project."""
    os.environ["FACEPIPE_MEDIA"] = str(media)
    project = make_tiny_project(work / "reference", pair_config())
    subprocess.run([str(BIN / "snakemake"), "--cores", "2"], cwd=project, check=True, capture_output=True)
    return project


def copy_reference(reference_project: Path, project: Path, media: Path, results: bool = True) -> None:
    """A project to interrupt: a copy of the reference with its modification times
    (Snakemake compares them), its media link pointing here, and no DVC (a commit after
    each run would time DVC, not the build)."""
    shutil.copytree(reference_project, project, symlinks=True, copy_function=shutil.copy2,
                    ignore=shutil.ignore_patterns(".dvc", ".git", *([] if results else ["results"])))
    (project / "media").unlink()
    (project / "media").symlink_to(media, target_is_directory=True)


def kills(work: Path, reference_project: Path, per_stage: int, seed: int, stages: list[str],
          signals: tuple[str, ...]) -> dict:
    rng = random.Random(seed)
    jobs = reference_jobs(reference_project)
    project = work / "kills"
    training = yaml.safe_load((project / PARAMS).read_text())["train"]
    trials = []
    for rule in stages:
        for signal_name in signals:
            for _ in range(per_stage):
                job = rng.choice(jobs[rule])
                reference = snapshot(reference_project, job.outputs)
                for _attempt in range(3):  # a moment after the job ended: another, within its measured run
                    trial = kill_trial(project, reference, job, signal_name, rng.random(), training)
                    if trial["landed"]:
                        break
                    job = dataclasses.replace(job, seconds=trial["job_seconds"] or job.seconds)
                print(f"kills: {rule} {signal_name}: {json.dumps(trial)[:600]}", file=sys.stderr)
                trials.append(trial)
    lost = [t["steps_lost"] for t in trials if "steps_lost" in t]
    return {"trials": len(trials), "landed": sum(t["landed"] for t in trials),
            "completed": sum(t["completed"] for t in trials), "identical": sum(t["identical"] for t in trials),
            "half_written": sum(len(t["half_written"]) for t in trials),
            "tracebacks": sum(t["traceback"] for t in trials),
            "processes_left": sum(t["processes_left"] for t in trials),
            "temporary_left": sum(len(t["temporary_left"]) for t in trials),
            "training_kills": len(lost), "training_steps_lost_max": max(lost, default=0),
            "training_resumed_from_latest": sum(t.get("resumed_from_latest", False) for t in trials),
            "save_every": training["save_every"],
            "per_stage": {rule: {"trials": sum(t["rule"] == rule for t in trials),
                                 "landed": sum(t["rule"] == rule and t["landed"] for t in trials)}
                          for rule in stages}}


# --- a full disk

DISK_STAGES = ["frames", "detect", "train", "convert"]


def disk_usage(files: list[Path]) -> int:
    """Bytes a tmpfs needs for these files (whole pages)."""
    return sum(-(-f.stat().st_size // 4096) * 4096 for f in files)


def full_disk(work: Path, reference_project: Path, media: Path, stage: str) -> dict:
    """The stage's job with results/ on a tmpfs that holds everything built before it
    and half of what the job writes (for train, half of its checkpoints): it must stop
    with one line naming the file system and the space it needs, and damage nothing
    built before; with space freed (the tmpfs grown), a rerun completes with the
    uninterrupted build's bytes."""
    job = reference_jobs(reference_project)[stage][0]
    project = work / f"disk-{stage}"
    copy_reference(reference_project, project, media, results=False)
    pair = Path(job.outputs[0]).parts[2] if stage == "train" else None
    writes = [Path(o) for o in job.outputs] + ([Path("results/checkpoints") / pair] if pair else [])

    def written(name: Path) -> bool:
        return any(name == w or w in name.parents for w in writes)

    kept = [p for p in (reference_project / "results").rglob("*")
            if p.is_file() and not written(p.relative_to(reference_project))]
    job_bytes = disk_usage([p for p in (reference_project / "results").rglob("*")
                            if p.is_file() and written(p.relative_to(reference_project))])
    results = project / "results"
    results.mkdir()
    size = disk_usage(kept) + job_bytes // 2
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(results)], check=True)
    try:
        for file in kept:
            target = project / file.relative_to(reference_project)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, target)
        before = snapshot(project, ["results"])
        code, output = snakemake(project, job.outputs[0])
        errors = [line for line in output.splitlines() if line.startswith("facepipe") and "error:" in line]
        after = {name: data for name, data in snapshot(project, ["results"]).items() if not written(Path(name))}
        subprocess.run(["mount", "-o", f"remount,size={size + 2 * job_bytes + (16 << 20)}", str(results)], check=True)
        rerun, rerun_output = snakemake(project, job.outputs[0])
        return {"stage": stage, "tmpfs_mb": round(size / 1e6, 1), "job_mb": round(job_bytes / 1e6, 1),
                "refused_one_line": code not in (0, None) and len(errors) == 1 and str(results) in errors[0]
                and "MB free" in errors[0], "said": errors[:2],
                "earlier_damaged": sum(after.get(name) != data for name, data in before.items()),
                "traceback": TRACEBACK in output + rerun_output,
                "rerun_completed": rerun == 0,
                "rerun_identical": snapshot(project, job.outputs) == snapshot(reference_project, job.outputs),
                **({} if rerun == 0 else {"rerun_error": rerun_output[-1500:]})}
    finally:
        subprocess.run(["umount", "-l", str(results)], check=False)


def full_disks(work: Path, reference_project: Path, media: Path, stages: list[str]) -> dict:
    trials = [full_disk(work, reference_project, media, stage) for stage in stages]
    for trial in trials:
        print(f"full disk: {json.dumps(trial)[:800]}", file=sys.stderr)
    return {"stages": len(trials), "refused_one_line": sum(t["refused_one_line"] for t in trials),
            "earlier_damaged": sum(t["earlier_damaged"] for t in trials),
            "tracebacks": sum(t["traceback"] for t in trials),
            "rerun_completed": sum(t["rerun_completed"] for t in trials),
            "rerun_identical": sum(t["rerun_identical"] for t in trials),
            "per_stage": {t["stage"]: t["said"][0][:300] if t["said"] else None for t in trials}}


# --- two runs at once

def two_runs(work: Path, reference_project: Path, seed: int) -> dict:
    """A build (one of its jobs forced) and, while it runs, a second `snakemake` in the
    same folder: the second must be refused in one line, the first finish unharmed."""
    project = work / "kills"
    job = random.Random(seed).choice(reference_jobs(reference_project)["evaluate"])
    first = subprocess.Popen([str(BIN / "snakemake"), "--cores", "2", "--force", job.outputs[0]], cwd=project,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while job_process(psutil.Process(first.pid), job.rule) is None and first.poll() is None:
        time.sleep(0.05)
    started = time.monotonic()
    code, output = snakemake(project)
    refusal = [line for line in output.splitlines() if line.strip()]
    first_output = first.communicate()[0]
    return {"second_refused_one_line": code not in (0, None) and len(refusal) == 1
            and refusal[0].startswith("facepipe: error:") and "another build is running" in refusal[0],
            "second_seconds": round(time.monotonic() - started, 1), "second_said": refusal[-1:],
            "first_completed": first.returncode == 0, "tracebacks": (TRACEBACK in output) + (TRACEBACK in first_output),
            "first_identical": snapshot(project, job.outputs) == snapshot(reference_project, job.outputs),
            **({} if first.returncode == 0 else {"first_error": first_output[-1500:]})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=Path(os.environ.get("FACEPIPE_MEDIA", ROOT.parent / "shared/media")))
    parser.add_argument("--small", action="store_true", help="the seeded short version the tests run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", default="fuzz,kills,disk,media,two_runs",
                        help="comma-separated: fuzz, kills, disk, media, two_runs")
    parser.add_argument("--reference", type=Path, help="an uninterrupted build of the tests' tiny woman_a <-> woman_b "
                        "project (tests/conftest.py); without it, one is built first")
    parser.add_argument("--stages", default=",".join(STAGES), help="the stages the kills part interrupts")
    parser.add_argument("--kills", type=int, help="interruptions of each kind per stage (default 5, or 1 with --small)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mutations", type=int, help="how many (default 300, or one of each kind with --small)")
    args = parser.parse_args()
    results: dict = {"seed": args.seed, "small": args.small}
    with tempfile.TemporaryDirectory(prefix="facepipe-faults-") as tmp:
        work = Path(tmp)
        parts = set(args.parts.split(","))
        if "fuzz" in parts:
            count = args.mutations or (len(KINDS) if args.small else 300)
            results["fuzz"] = fuzz(work, args.media.resolve(), count, args.seed, args.workers, args.small)
        reference = args.reference or (build_reference(work, args.media.resolve())
                                       if parts & {"kills", "disk", "media", "two_runs"} else None)
        if parts & {"kills", "two_runs"}:
            copy_reference(reference.resolve(), work / "kills", args.media.resolve())
        if "kills" in parts:
            # Small: kill -9 of a training (tests/test_train.py has its Ctrl-C).
            stages, signals = (["train"], ("SIGKILL",)) if args.small else (args.stages.split(","), ("SIGKILL", "SIGINT"))
            per_stage = args.kills or (1 if args.small else 5)
            results["kills"] = kills(work, reference.resolve(), per_stage, args.seed, stages, signals)
        if "disk" in parts:
            stages = [random.Random(args.seed).choice(DISK_STAGES)] if args.small else DISK_STAGES
            results["disk"] = full_disks(work, reference.resolve(), args.media.resolve(), stages)
        if "media" in parts:
            copy_reference(reference.resolve(), work / "media_project", args.media.resolve())
            results["media"] = media_part(work / "media_part", args.media.resolve(), work / "media_project", args.small,
                                          args.seed)
        if "two_runs" in parts:
            results["two_runs"] = two_runs(work, reference.resolve(), args.seed)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
