"""Loading and checking the two files a user edits: the build config (who, from where,
which swaps) and params.yaml (how each stage works). Every problem is reported as one
line naming the file and the key, before any work starts."""

from __future__ import annotations

import math
from pathlib import Path

import jsonschema
import yaml

from .errors import FacepipeError

SCHEMA_DIR = Path(__file__).parent / "schemas"
# A config or params file holds a few hundred values; this many is an accident or an attack.
MAX_VALUES = 100_000


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FacepipeError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise FacepipeError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise FacepipeError(f"{path}: nested too deeply to read; it needs the shape of the example") from None
    if _too_many_values(data):  # YAML aliases can make a small file expand beyond any memory
        raise FacepipeError(f"{path}: more than {MAX_VALUES} values once its aliases (*name) are expanded; "
                            "write them out, or remove what is not a setting") from None
    return data if data is not None else {}


def _too_many_values(data) -> bool:
    """Whether `data` holds more than MAX_VALUES values, aliases counted each time they
    are used (a walk that stops at the limit, so a billion laughs costs nothing)."""
    budget, stack = MAX_VALUES, [data]
    while stack:
        budget -= 1
        if budget < 0:
            return True
        item = stack.pop()
        if isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
    return False


def check_config_file(path: str | Path) -> None:
    """The build config is YAML with keys at its top (Snakemake's own message for one
    that is not is a block of text)."""
    data = load_yaml(path)
    if not isinstance(data, dict) or not data:
        raise FacepipeError(f"{path}: {'empty' if not data else 'not a mapping of keys'}; it needs people, pairs "
                            "and swaps (README, Quick start)")


def _non_finite(data, path: tuple = ()) -> tuple | None:
    """The path and value of the first NaN or infinity in loaded YAML (.nan, .inf), if
    any: JSON Schema's bounds let NaN through (no comparison with it is true)."""
    if isinstance(data, float) and not math.isfinite(data):
        return path, data
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        if (found := _non_finite(value, path + (key,))) is not None:
            return found
    return None


def _schema(name: str) -> dict:
    return yaml.safe_load((SCHEMA_DIR / f"{name}.schema.yaml").read_text())


def _location(path) -> str:
    parts = []
    for part in path:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}" if parts else str(part))
    return "".join(parts) or "(top level)"


def check_schema(data: dict, name: str, filename: str) -> None:
    if (found := _non_finite(data)) is not None:
        raise FacepipeError(f"{filename}: {_location(found[0])}: {found[1]} is not a finite number")
    validator = jsonschema.Draft202012Validator(_schema(name))
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is None:
        return
    message = error.message
    if error.validator == "pattern":  # the only patterns are the name rule's
        message = (f"{error.instance!r} is not a valid name: use letters, digits, '_' and '-' only, "
                   "not starting with '-'")
    raise FacepipeError(f"{filename}: {_location(error.absolute_path)}: {message}")


def check_config(config: dict, filename: str = "config") -> dict:
    """Validate the build config against its schema and its cross-references."""
    check_schema(config, "config", filename)
    people = config["people"]
    for pair, spec in config["pairs"].items():
        for side in ("a", "b"):
            if spec[side] not in people:
                raise FacepipeError(f"{filename}: pairs.{pair}.{side}: unknown person {spec[side]!r}; "
                                    f"known people: {', '.join(sorted(people))}")
        if spec["a"] == spec["b"]:
            raise FacepipeError(f"{filename}: pairs.{pair}: a and b are both {spec['a']!r}; a pair needs two people")
    if "pretrain" in config["pairs"]:
        raise FacepipeError(f"{filename}: pairs.pretrain: 'pretrain' names the pretrained model; call the pair "
                            "something else")
    for person in config.get("pretrain", {}).get("people", []):
        if person not in people:
            raise FacepipeError(f"{filename}: pretrain.people: unknown person {person!r}; known people: "
                                f"{', '.join(sorted(people))}")
    for swap, spec in config["swaps"].items():
        pair = config["pairs"].get(spec["pair"])
        if pair is None:
            known = ", ".join(sorted(config["pairs"])) or "none"
            raise FacepipeError(f"{filename}: swaps.{swap}.pair: unknown pair {spec['pair']!r}; known pairs: {known}")
        if spec["from"] not in (pair["a"], pair["b"]):
            raise FacepipeError(f"{filename}: swaps.{swap}.from: {spec['from']!r} is not in pair {spec['pair']!r} "
                                f"({pair['a']}, {pair['b']})")
    return config


def check_params(params: dict, filename: str = "params.yaml") -> dict:
    check_schema(params, "params", filename)
    return params


def check_start(params: dict, config: dict, config_name: str, filename: str = "params.yaml") -> None:
    """`train.init_from` names a pair of the config, its pretrained model or a model folder."""
    init = params["train"]["init_from"]
    if init is None or init in config["pairs"]:
        return
    if init == "pretrain":
        if "pretrain" not in config:
            raise FacepipeError(f"{filename}: train.init_from: 'pretrain', but {config_name} has no pretrain section; "
                                "add one (pretrain: {{people: [...], sources: [...]}}) or set train.init_from to null")
        return
    if not (Path(init) / "model.json").is_file() or not (Path(init) / "weights.msgpack").is_file():
        pairs = ", ".join(sorted(config["pairs"])) or "none"
        raise FacepipeError(f"{filename}: train.init_from: {init!r} is not a pair of {config_name} ({pairs}), "
                            "'pretrain', or a model folder (model.json and weights.msgpack, e.g. results/models/<pair> "
                            "pulled with dvc); fix it or set it to null")


def load_params(path: str | Path = "params.yaml") -> dict:
    return check_params(load_yaml(path), str(path))
