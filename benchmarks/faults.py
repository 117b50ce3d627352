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

The last line is one JSON object of counts."""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import copy
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import pair_config  # noqa: E402  (the tests' valid config: woman_a <-> woman_b)

BIN = Path(sys.executable).parent
CONFIG = "config/config.yaml"
PARAMS = "params.yaml"
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


def mutate(rng: random.Random, canary: Path) -> Mutation:
    config, params = pair_config(), yaml.safe_load((ROOT / PARAMS).read_text())
    kind = rng.choice(["type", "range", "missing", "unknown", "empty", "name", "path", "yaml"])
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
    if "Traceback (most recent call last)" in output:
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


def fuzz(work: Path, media: Path, count: int, seed: int, workers: int, build: bool) -> dict:
    rng = random.Random(seed)
    canaries = [work / f"canary-{i}" for i in range(workers)]
    projects = [make_project(work / f"fuzz-{i}", media) for i in range(workers)]
    mutations = [mutate(rng, canaries[i % workers]) for i in range(count)]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=Path(os.environ.get("FACEPIPE_MEDIA", ROOT.parent / "shared/media")))
    parser.add_argument("--small", action="store_true", help="the seeded short version the tests run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", default="fuzz", help="comma-separated: fuzz")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mutations", type=int, help="how many (default 300, or 24 with --small)")
    args = parser.parse_args()
    results: dict = {"seed": args.seed, "small": args.small}
    with tempfile.TemporaryDirectory(prefix="facepipe-faults-") as tmp:
        work = Path(tmp)
        if "fuzz" in args.parts.split(","):
            count = args.mutations or (24 if args.small else 300)
            results["fuzz"] = fuzz(work, args.media.resolve(), count, args.seed, args.workers, build=not args.small)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
