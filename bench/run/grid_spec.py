"""What a grid of runs is: attacks × defenses × datasets × seeds and the shared settings, from the command line
(`--attacks A,B --defenses X:k=v`) or a grid file (TOML/JSON), checked before anything is planned."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from bench.errors import BenchError
from bench.params import label
from bench.profiles import DEFAULT_PROFILE

GRID_FILE_KEYS = ("attacks", "defenses", "datasets", "seeds", "profile", "n_train", "n_test", "metrics", "results",
                  "device", "extractor", "attack_params", "extractor_params", "threads")

# An attack item's parameter named `extractor.KEY` goes to the victim extractor of that item's runs
# (`--attacks dlg,dlg:extractor.batch=4`), over the grid's `--extractor-arg` / `extractor_params`.
EXTRACTOR_PREFIX = "extractor."


# ------------------------------------------------------------------------------------------------------- spec
@dataclass(frozen=True)
class PluginItem:
    """One attack or defense of a grid with its parameters (`subsample:keep=0.25:seed_offset=1` on the CLI)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return label(self.name, dict(self.params))


@dataclass(frozen=True)
class DatasetItem:
    """One dataset of a grid and its image folder (`utkface=../shared/data/faces/utkface` on the CLI)."""

    name: str
    data_root: Path | None = None


@dataclass
class GridSpec:
    """What a grid runs: the cross product of attacks, defenses, datasets and seeds, with shared settings.

    `threads` is each run's torch/OpenCV thread count: None means the cores of the process for the local executor
    and one thread per worker for Dask.
    """

    attacks: list[PluginItem]
    defenses: list[PluginItem] = field(default_factory=lambda: [PluginItem("none")])
    datasets: list[DatasetItem] = field(default_factory=lambda: [DatasetItem("synthetic-faces")])
    seeds: list[int] = field(default_factory=lambda: [0])
    profile: str = DEFAULT_PROFILE
    n_train: int | None = None
    n_test: int | None = None
    metrics: tuple[str, ...] | None = None  # None: each run's defaults (bench/run/metric_defaults.py)
    results: Path = Path("bench-results")
    device: str = "cpu"
    extractor: str | None = None
    attack_params: Mapping[str, Any] = field(default_factory=dict)  # given to every attack (its own params win)
    threads: int | None = None
    extractor_params: Mapping[str, Any] = field(default_factory=dict)  # given to every run's extractor

    def __post_init__(self) -> None:
        self.attacks = [a if isinstance(a, PluginItem) else parse_plugin_item(a, "--attacks") for a in self.attacks]
        self.defenses = [d if isinstance(d, PluginItem) else parse_plugin_item(d, "--defenses")
                         for d in self.defenses]
        self.datasets = [d if isinstance(d, DatasetItem) else parse_dataset_item(d) for d in self.datasets]
        for what, items in (("attack", self.attacks), ("defense", self.defenses), ("dataset", self.datasets),
                            ("seed", self.seeds)):
            if not items:
                raise BenchError(f"the grid has no {what}; name at least one")
        self.seeds = [int(s) for s in self.seeds]
        self.metrics = None if self.metrics is None else tuple(self.metrics)
        self.results = Path(self.results)

    @property
    def size(self) -> int:
        return len(self.attacks) * len(self.defenses) * len(self.datasets) * len(self.seeds)


def split_item_params(item: PluginItem) -> tuple[dict[str, Any], dict[str, Any]]:
    """(attack parameters, extractor parameters) of an attack item: keys `extractor.KEY` are the extractor's."""
    attack = {k: v for k, v in item.params.items() if not k.startswith(EXTRACTOR_PREFIX)}
    extractor = {k[len(EXTRACTOR_PREFIX):]: v for k, v in item.params.items() if k.startswith(EXTRACTOR_PREFIX)}
    if "" in extractor:
        raise BenchError(f"--attacks {item.label}: `{EXTRACTOR_PREFIX}` names no extractor parameter")
    return attack, extractor


def split_list(text: str) -> list[str]:
    """`a, b,,c` -> ["a", "b", "c"]."""
    return [part.strip() for part in str(text).split(",") if part.strip()]


def parse_plugin_item(text: str, option: str = "--defenses") -> PluginItem:
    """`name` or `name:key=value[:key=value...]` as a PluginItem (values stay text; the plugin coerces them)."""
    name, *assignments = [p.strip() for p in str(text).strip().split(":")]
    if not name:
        raise BenchError(f"{option}: empty name in {text!r}")
    params: dict[str, str] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"{option}: {text!r}: expected NAME:KEY=VALUE[:KEY=VALUE], got {item!r}")
        if key.strip() in params:
            raise BenchError(f"{option}: {text!r} gives {key.strip()!r} twice")
        params[key.strip()] = value.strip()
    return PluginItem(name, params)


def parse_dataset_item(text: str, base: Path | None = None) -> DatasetItem:
    """`name` or `name=ROOT`; a relative ROOT resolves against `base` (a grid file's folder) when given."""
    name, sep, root = str(text).strip().partition("=")
    if not name.strip():
        raise BenchError(f"--datasets: empty dataset name in {text!r}")
    if sep and not root.strip():
        raise BenchError(f"--datasets: {text!r} names no folder after '='")
    return DatasetItem(name.strip(), _path(root.strip(), base) if sep else None)


def parse_seeds(text: str | int | Iterable[Any]) -> list[int]:
    """`0,1,2` (or a number, or a list) as seeds; `0-4` is the range 0..4 inclusive."""
    items: list[Any] = split_list(text) if isinstance(text, str) else [text] if isinstance(text, int) else list(text)
    seeds: list[int] = []
    for item in items:
        try:
            if isinstance(item, str) and "-" in item.strip()[1:]:
                lo, hi = item.split("-", 1)
                seeds += list(range(int(lo), int(hi) + 1))
            elif isinstance(item, bool):
                raise ValueError
            else:
                seeds.append(int(item))
        except (TypeError, ValueError):
            raise BenchError(f"--seeds: {item!r} is not a seed (use e.g. 0,1,2 or 0-4)") from None
    return list(dict.fromkeys(seeds))


def _path(text: str | Path, base: Path | None) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() or base is None else base / path


# ------------------------------------------------------------------------------------------------- grid files
def load_grid_file(path: Path) -> dict[str, Any]:
    """The grid file's fields (TOML, or YAML when PyYAML is installed), relative paths resolved against its folder.

    Keys: attacks, defenses, datasets, seeds, profile, n_train, n_test, metrics (and results, device, extractor,
    attack_params, extractor_params, threads). `defenses` and `attacks` hold CLI-syntax strings or tables {name, params};
    `datasets` holds strings (`name` or `name=ROOT`) or tables {name, data_root}.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"--grid-file {path}: no such file")
    suffix = path.suffix.lower()
    text = path.read_bytes()
    if suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise BenchError(f"--grid-file {path}: not valid TOML ({exc})") from None
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise BenchError(f"--grid-file {path} is YAML, which needs PyYAML: pip install pyyaml "
                             "(or write the grid in TOML)") from None
        try:
            data = yaml.safe_load(text.decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise BenchError(f"--grid-file {path}: not valid YAML ({' '.join(str(exc).split())})") from None
    else:
        raise BenchError(f"--grid-file {path}: unknown format {suffix or '(no suffix)'}; use .toml, .yaml or .yml")
    if not isinstance(data, dict):
        raise BenchError(f"--grid-file {path}: expected a table of keys ({', '.join(GRID_FILE_KEYS)})")
    return grid_fields(data, path.parent.resolve(), str(path))


def grid_fields(data: Mapping[str, Any], base: Path | None, where: str = "grid") -> dict[str, Any]:
    """GridSpec keyword arguments from a grid file's table (relative paths against `base`)."""
    unknown = sorted(set(data) - set(GRID_FILE_KEYS))
    if unknown:
        raise BenchError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(GRID_FILE_KEYS)}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("attacks", "defenses"):
            out[key] = [_plugin_entry(v, key, where) for v in _as_list(value, key, where)]
        elif key == "datasets":
            out[key] = [_dataset_entry(v, base, where) for v in _as_list(value, key, where)]
        elif key == "seeds":
            out[key] = parse_seeds(value)
        elif key == "metrics":
            out[key] = tuple(split_list(value) if isinstance(value, str) else [str(v) for v in value])
        elif key in ("n_train", "n_test", "threads"):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise BenchError(f"{where}: {key} must be a whole number, got {value!r}")
            out[key] = value
        elif key == "results":
            out[key] = _path(str(value), base)
        elif key in ("attack_params", "extractor_params"):
            if not isinstance(value, Mapping):
                raise BenchError(f"{where}: {key} must be a table of KEY = VALUE")
            out[key] = dict(value)
        else:  # profile, device, extractor
            out[key] = str(value)
    return out


def _as_list(value: Any, key: str, where: str) -> list[Any]:
    if isinstance(value, str):
        return split_list(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    raise BenchError(f"{where}: {key} must be a list, got {value!r}")


def _plugin_entry(value: Any, key: str, where: str) -> PluginItem:
    if isinstance(value, str):
        return parse_plugin_item(value, f"{where}: {key}")
    if isinstance(value, Mapping) and "name" in value:
        extra = sorted(set(value) - {"name", "params"})
        params = value.get("params") or {}
        if extra or not isinstance(params, Mapping):
            raise BenchError(f"{where}: {key} entry {dict(value)!r}: expected {{name = ..., params = {{...}}}}")
        return PluginItem(str(value["name"]), dict(params))
    raise BenchError(f"{where}: {key} entry {value!r}: expected a string or a table {{name = ..., params = {{...}}}}")


def _dataset_entry(value: Any, base: Path | None, where: str) -> DatasetItem:
    if isinstance(value, str):
        return parse_dataset_item(value, base)
    if isinstance(value, Mapping) and "name" in value and not set(value) - {"name", "data_root"}:
        root = value.get("data_root")
        return DatasetItem(str(value["name"]), _path(str(root), base) if root else None)
    raise BenchError(f"{where}: datasets entry {value!r}: expected `name`, `name=ROOT` or a table "
                     "{name = ..., data_root = ...}")
