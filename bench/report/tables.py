"""Leaderboard tables for papers: configuration rows with numeric means, stds and seed counts, the metric metadata the
store holds (direction, range, conventions, sample counts), selection, grouping by defense and the best-value rule.

Every renderer (CSV, Markdown, LaTeX, HTML, figures) is a small function over the `Board` built here, so that they all
show the same numbers and claim the same wins. Nothing here imports a model: directions and conventions come from
the store's metric rows.

The best-value rule (`winner`): among the rows of one table with a value for the metric, the best mean in the
metric's stored direction is claimed as a win only when (1) there are at least two such rows, (2) the runner-up's
mean differs from it at the shown precision (no tie), and (3) the best row's mean ± std band does not overlap the
runner-up's (a row with one seed has no band: its std counts as 0). A metric whose direction is not recorded claims
nothing.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Collection, Iterable, Sequence

import pandas as pd

from bench.errors import BenchError
from bench.metric_value import NOT_COMPUTED, mean_std, over_seeds
from bench.report.leaderboard import FIRST_COLUMNS, LAST_COLUMNS, config_frame
from bench.store.db import Store

# Fields of a configuration that a table shows as columns when they differ between its rows, else in its header.
SETTING_FIELDS = ("aux_dataset", "profile", "extractor", "n_train", "n_test")


@dataclass(frozen=True)
class MetricInfo:
    """What the store recorded with a metric's values on one dataset."""

    name: str
    higher_is_better: bool | None
    lo: float | None = None
    hi: float | None = None
    conventions: tuple[str, ...] = ()
    sample_counts: tuple[int, ...] = ()
    details: tuple[str, ...] = ()  # status details of non-ok values ("unavailable: bench weights pull lpips-alex")
    caveats: tuple[str, ...] = ()  # details recorded with ok values ("biased: computed on 200 < 2048 images")

    @property
    def arrow(self) -> str:
        return {True: "↑", False: "↓"}.get(self.higher_is_better, "")  # type: ignore[arg-type]


@dataclass
class Board:
    """One dataset's configuration rows.

    `frame` has the identity and provenance columns of the CSV leaderboard (attack, defense, settings, seeds,
    config_id, run_ids, dataset_note, and `source` when another tool added it), and per metric `m`: `m` (mean over
    the seeds with an ok value, NaN when none), `m_std` (sample std, NaN with fewer than two), `m_k` (seeds with an
    ok value) and `m_status` (why a value is missing or partial; empty when every seed has one). Per utility figure
    `u`: `utility:u` and `utility:u_std`. `grids` holds, per row, the reconstruction grids of its runs (may be
    missing files).
    """

    dataset: str
    frame: pd.DataFrame
    metrics: dict[str, MetricInfo]
    utilities: list[str] = field(default_factory=list)
    # Metrics with no value in any row of this table (each with its recorded status details): a table prints them
    # as one line under itself, not as a column of `unavailable` (set by `by_defense`).
    absent: dict[str, MetricInfo] = field(default_factory=dict)
    origin_note: str = ""  # where the board's facts come from when not from the store (a CSV leaderboard)


def _short_status(entry: dict[str, Any]) -> str:
    return str(entry.get("status") or NOT_COMPUTED)


def _metric_stats(entries: list[dict[str, Any] | None]) -> tuple[float, float, int, str]:
    """(mean, std, ok seeds, status text) of one metric over the runs of one row."""
    stats = over_seeds(entries)
    if not stats.k:
        statuses = sorted({_short_status(e) for e in stats.present}) or [NOT_COMPUTED]
        return math.nan, math.nan, 0, "/".join(statuses)
    status = "" if stats.k == stats.n else f"{stats.k}/{stats.n} seeds"
    return stats.mean, stats.std, stats.k, status


def _merge_info(info: dict[str, dict[str, Any]], name: str, entry: dict[str, Any]) -> None:
    slot = info.setdefault(name, {"hib": None, "lo": None, "hi": None, "conv": [], "n": set(), "details": [],
                                  "caveats": []})
    if slot["hib"] is None and entry.get("higher_is_better") is not None:
        slot["hib"] = bool(entry["higher_is_better"])
    if slot["lo"] is None and entry.get("lo") is not None:
        slot["lo"] = entry["lo"]
    if slot["hi"] is None and entry.get("hi") is not None:
        slot["hi"] = entry["hi"]
    if entry.get("convention") and entry["convention"] not in slot["conv"]:
        slot["conv"].append(str(entry["convention"]))
    if entry.get("status", "ok") == "ok":
        if entry.get("n"):  # a CSV leaderboard does not record sample counts: no count is not a count of 0
            slot["n"].add(int(entry["n"]))
        if entry.get("detail") and str(entry["detail"]) not in slot["caveats"]:
            slot["caveats"].append(str(entry["detail"]))
    else:
        text = f"{entry['status']}: {entry['detail']}" if entry.get("detail") else str(entry["status"])
        if text not in slot["details"]:
            slot["details"].append(text)


def _spec_of(store: Store, run_ids: Sequence[str]) -> dict[str, Any]:
    """The run spec of the first of `run_ids` the store can parse ({} when none); for a run re-keyed by the store
    migration to content fingerprints, with the fingerprint its configuration id was computed from."""
    for rid in run_ids:
        run = store.run(rid) or {}
        try:
            spec = json.loads(run.get("spec_json") or "{}")
            record = json.loads(run.get("record_json") or "{}")
        except ValueError:
            continue
        if isinstance(spec, dict):
            rekeyed = record.get("rekeyed") if isinstance(record, dict) else None
            if isinstance(rekeyed, dict) and isinstance(rekeyed.get("dataset_fingerprint"), dict):
                spec = {**spec, "dataset_fingerprint": rekeyed["dataset_fingerprint"]}
            return spec
    return {}


def _data_fingerprint(spec: dict[str, Any]) -> str:
    """The first 8 hex digits of the digest of the data folder's fingerprint in a run spec ('' when none)."""
    from bench.hashing import digest

    return digest(spec["dataset_fingerprint"], 8) if spec.get("dataset_fingerprint") else ""


def _flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(obj, dict):
        out: dict[str, str] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: json.dumps(obj, sort_keys=True) if isinstance(obj, (list, tuple)) else str(obj)}


# Run-spec fields a table shows elsewhere (row label, settings, `data`), never a difference between configurations
# (the seed), or a machine's folder (data roots: the `data` column tells data apart without naming a path).
_SHOWN = re.compile(r"^(seed|attack|defense|dataset|aux_dataset|profile|n_train|n_test|data_root|aux_data_root|"
                    r"dataset_fingerprint(\..*)?|extractor\.name|attack_config\.(name|params\..*)|"
                    r"defense_params\.(name|params\..*))$")


def _differences(rows: list[dict[str, Any]], specs: list[dict[str, Any]]) -> None:
    """Set each row's `differs`: the run-spec fields not shown elsewhere in which it differs from another row of the
    same attack and defense (`extract_size=128`), '' when none."""
    flat = [{k: v for k, v in _flatten(spec).items() if not _SHOWN.match(k)} for spec in specs]
    groups: dict[tuple[str, str], list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault((str(row.get("attack")), str(row.get("defense"))), []).append(i)
        row["differs"] = ""
    for members in groups.values():
        if len(members) < 2:
            continue
        keys = sorted(k for k in set().union(*(flat[i] for i in members))
                      if len({flat[i].get(k, "") for i in members}) > 1)
        last = [k.rsplit(".", 1)[-1] for k in keys]
        names = [s if last.count(s) == 1 else k for k, s in zip(keys, last)]
        for i in members:
            rows[i]["differs"] = ", ".join(f"{n}={flat[i].get(k, '-')}" for k, n in zip(keys, names))


def convention_tag(detail: object) -> str | None:
    """The versioned convention tag a stored utility's detail starts with (`utility-eval/1: ...`), else None. Runs of
    one row whose utilities carry different tags (e.g. a grid re-scored half-way) are not averaged: the cell is empty."""
    m = re.match(r"([A-Za-z0-9_.-]+/\d+):", str(detail or ""))
    return m.group(1) if m else None


def load_board(store: Store, dataset: str, runs_dir: Path | None = None,
               run_ids: Collection[str] | None = None) -> Board:
    """The board of `dataset` from the store; `runs_dir` (RESULTS/runs) locates each run's grid.png. Every format
    (CSV, Markdown, LaTeX, HTML, figures) renders this one board: each metric is aggregated over seeds here, once.
    `run_ids`, when given, keeps only those runs (`bench leaderboard --grid-file`: the runs a grid file plans)."""
    base = config_frame(store, dataset, run_ids)
    keep = [c for c in base.columns if c in FIRST_COLUMNS or c in LAST_COLUMNS or c == "source"]
    rows: list[dict[str, Any]] = []
    specs: list[dict[str, Any]] = []
    names: set[str] = set()
    utilities: set[str] = set()
    for _, base_row in base.iterrows():
        row = {c: base_row[c] for c in keep}
        run_ids = str(base_row["run_ids"]).split()
        row["config"] = str(base_row["config_id"])[:8]
        specs.append(_spec_of(store, run_ids))
        row["data"] = _data_fingerprint(specs[-1])
        per_run = [store.set_metrics(r) for r in run_ids]
        entries = {name: [m.get(name) for m in per_run] for name in sorted(set().union(*per_run))} if per_run else {}
        for name, values in entries.items():
            names.add(name)
            row[name], row[f"{name}_std"], row[f"{name}_k"], row[f"{name}_status"] = _metric_stats(values)
        per_run_utility = [store.utility(r) for r in run_ids]
        for name in sorted(set().union(*per_run_utility)) if per_run_utility else []:
            utilities.add(name)
            got = [u[name] for u in per_run_utility if name in u and u[name]["value"] is not None]
            if len({convention_tag(g["detail"]) for g in got}) > 1:  # never pooled across conventions
                row[f"utility:{name}"], row[f"utility:{name}_std"] = float("nan"), float("nan")
                continue
            row[f"utility:{name}"], row[f"utility:{name}_std"] = mean_std([g["value"] for g in got])
        row["entries"] = entries
        row["grids"] = tuple(str(Path(runs_dir) / r / "grid.png") for r in run_ids) if runs_dir else ()
        rows.append(row)
    _differences(rows, specs)
    frame = pd.DataFrame(rows)
    if not len(frame):
        frame = pd.DataFrame(columns=keep + ["entries", "grids"])
    for name in names:  # a metric absent from a row is "not computed" there
        for suffix, empty in (("", math.nan), ("_std", math.nan), ("_k", 0), ("_status", "not computed")):
            col = f"{name}{suffix}"
            if col not in frame:
                frame[col] = empty
            if suffix in ("_k", "_status"):
                frame[col] = frame[col].fillna(empty)
        frame[f"{name}_k"] = frame[f"{name}_k"].astype(int)
    for name in utilities:
        for col in (f"utility:{name}", f"utility:{name}_std"):
            if col not in frame:
                frame[col] = math.nan
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    frame = frame.reset_index(drop=True)
    return Board(dataset, frame, metric_infos(frame, sorted(names)), sorted(utilities))


def metric_infos(frame: pd.DataFrame, names: Sequence[str]) -> dict[str, MetricInfo]:
    """Direction, range, conventions, sample counts and non-ok details of `names`, from the store entries of the
    rows in `frame` (so that a table's notes speak only of its own rows)."""
    out = {}
    for name in names:
        info: dict[str, dict[str, Any]] = {}
        for entries in frame.get("entries", pd.Series(dtype=object)):
            for e in (entries or {}).get(name, []):
                if e is not None:
                    _merge_info(info, name, e)
        s = info.get(name) or {"hib": None, "lo": None, "hi": None, "conv": [], "n": set(), "details": [],
                               "caveats": []}
        out[name] = MetricInfo(name, s["hib"], s["lo"], s["hi"], tuple(s["conv"]), tuple(sorted(s["n"])),
                               tuple(s["details"]), tuple(s["caveats"]))
    return out


def _has_values(frame: pd.DataFrame, metric: str) -> bool:
    """Whether any row has a value or a recorded status for `metric` (not merely 'not computed')."""
    return bool(len(frame)) and bool((frame[f"{metric}_status"].astype(str) != "not computed").any()
                                     or (frame[f"{metric}_k"] > 0).any())


def defense_name(label: str) -> str:
    """`subsample(keep=0.25)` -> `subsample`."""
    return str(label).split("(", 1)[0]


def select(board: Board, defenses: Sequence[str] = (), metrics: Sequence[str] = ()) -> Board:
    """Only the rows of the given defenses (by name or full label) and only the given metrics (in that order)."""
    frame = board.frame
    if defenses:
        known = sorted(set(frame["defense"].astype(str)))
        wanted = set(defenses)
        mask = frame["defense"].astype(str).map(lambda d: d in wanted or defense_name(d) in wanted)
        missing = [d for d in defenses if not any(d == k or d == defense_name(k) for k in known)]
        if missing:
            raise BenchError(f"no finished runs of defense {', '.join(missing)} on {board.dataset}; it has "
                             f"{', '.join(known) or 'none'}")
        frame = frame[mask]
    chosen = dict(board.metrics)
    if metrics:
        unknown = [m for m in metrics if m not in board.metrics]
        if unknown:
            raise BenchError(f"metric {', '.join(unknown)} has no values on {board.dataset}; it has "
                             f"{', '.join(board.metrics) or 'none'}")
        chosen = {m: board.metrics[m] for m in metrics}
    frame = frame.reset_index(drop=True)
    return replace(board, frame=frame, metrics=metric_infos(frame, list(chosen)))


def by_defense(board: Board) -> list[tuple[str, Board]]:
    """One board per defense label (`none` first, then by name): the tables of one dataset."""
    labels = sorted(set(board.frame["defense"].astype(str)), key=lambda d: (defense_name(d) != "none", d))
    out = []
    for d in labels:
        frame = board.frame[board.frame["defense"].astype(str) == d].reset_index(drop=True)
        recorded = [m for m in board.metrics if _has_values(frame, m)]
        names = [m for m in recorded if (frame[f"{m}_k"] > 0).any()]
        absent = [m for m in recorded if m not in names]
        utilities = [u for u in board.utilities if frame[f"utility:{u}"].notna().any()]
        out.append((d, replace(board, frame=frame, metrics=metric_infos(frame, names), utilities=utilities,
                               absent=metric_infos(frame, absent))))
    return out


def varying_settings(frame: pd.DataFrame) -> list[str]:
    """The setting fields whose value differs between the rows: each becomes a column of the table."""
    return [f for f in SETTING_FIELDS if f in frame and frame[f].astype(str).nunique() > 1]


def common_settings(frame: pd.DataFrame) -> dict[str, Any]:
    """The setting fields shared by every row: said once, in the table's header."""
    return {f: frame[f].iloc[0] for f in SETTING_FIELDS if f in frame and len(frame)
            and frame[f].astype(str).nunique() == 1}


# Columns beyond the settings that tell two rows apart when everything shown is the same: the data folder's
# fingerprint (`data`) and the other run-spec fields that differ (`differs`), both set by `load_board`, and as a last
# resort (a CSV leaderboard has no spec) the configuration id (`config`), whose run.json says what differs. Each is a
# column only when rows would otherwise look identical.
EXTRA_MEANING = {
    "differs": "differs: the run-spec fields (beyond the columns shown) in which rows of the same attack differ",
    "data": "data: the first 8 hex digits of the data folder's fingerprint (file names, sizes and modification "
            "times); rows that differ in it were run on different copies of the data",
    "config": "config: the first 8 hex digits of the configuration id; rows that differ only in it differ in "
              "something this table does not show (each run's run.json holds its full configuration)",
}


def _colliding(frame: pd.DataFrame, fields: Sequence[str]) -> pd.Series:
    """Whether each row shares its attack and `fields` with another row (the two would look identical)."""
    if not len(frame):
        return pd.Series([], dtype=bool)
    return frame[["attack", *fields]].astype(str).agg("\x1f".join, axis=1).duplicated(keep=False)


def distinguishing_columns(frame: pd.DataFrame) -> list[str]:
    """The columns that tell the rows apart: the varying settings, then, when rows would look identical without
    them, `data` and `differs` where they vary among those rows, and `config` when that is still not enough (a row
    that differs only in something not shown must not look like a duplicate)."""
    fields = varying_settings(frame)
    clash = _colliding(frame, fields)
    if not clash.any():
        return fields
    for extra in ("data", "differs"):
        if extra in frame and frame.loc[clash, extra].astype(str).nunique() > 1:
            fields.append(extra)
    if _colliding(frame, fields).any() and "config" in frame:
        fields.append("config")
    return fields


def row_labels(frame: pd.DataFrame, fields: Iterable[str] | None = None) -> list[str]:
    """`attack` plus the columns that tell rows apart (`cfgan [n_test=200]`), for figures and HTML titles."""
    fields = list(distinguishing_columns(frame) if fields is None else fields)
    out = []
    for _, r in frame.iterrows():
        extra = ", ".join(f"{f}={r[f]}" for f in fields)
        out.append(f"{r['attack']} [{extra}]" if extra else str(r["attack"]))
    return out


def decimals(values: Iterable[float]) -> int:
    """Decimals that give the largest finite |value| four significant digits (0 to 5)."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    if not finite:
        return 4
    return int(min(5, max(0, 3 - math.floor(math.log10(max(finite))))))


def metric_decimals(frame: pd.DataFrame, metric: str) -> int:
    return decimals(frame[metric].tolist()) if metric in frame else 4


def fmt(value: float, places: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{places}f}"


def winner(frame: pd.DataFrame, metric: str, higher_is_better: bool | None, places: int | None = None) -> int | None:
    """Position (0-based row) of the best value of `metric` when the rule in this module's docstring claims a win."""
    if higher_is_better is None or metric not in frame:
        return None
    means = pd.to_numeric(frame[metric], errors="coerce").to_numpy(dtype=float)
    stds = pd.to_numeric(frame[f"{metric}_std"], errors="coerce").to_numpy(dtype=float)
    have = [i for i in range(len(frame)) if not math.isnan(means[i])]
    if len(have) < 2:
        return None
    have.sort(key=lambda i: -means[i] if higher_is_better else means[i])
    best, second = have[0], have[1]
    places = metric_decimals(frame, metric) if places is None else places
    if means[best] == means[second] or fmt(means[best], places) == fmt(means[second], places):
        return None  # a tie (exact or at the shown precision)
    sb = 0.0 if math.isnan(stds[best]) else stds[best]
    s2 = 0.0 if math.isnan(stds[second]) else stds[second]
    if higher_is_better:
        overlap = means[best] - sb <= means[second] + s2
    else:
        overlap = means[best] + sb >= means[second] - s2
    return None if overlap else best


def cell(row: pd.Series, metric: str, places: int, pm: str = "±") -> str:
    """`0.5935 ± 0.0101`, `0.5935 ± 0.0101 (2/3 seeds)`, `0.5935` (one seed) or the status (`unavailable`)."""
    k = int(row.get(f"{metric}_k", 0) or 0)
    status = str(row.get(f"{metric}_status", "") or "")
    if k == 0:
        return status or "not computed"
    text = fmt(float(row[metric]), places)
    std = row.get(f"{metric}_std")
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        text += f" {pm} {fmt(float(std), places)}"
    if status:
        text += f" ({status})"
    return text


def sources(frame: pd.DataFrame) -> list[str]:
    """Per row, the bundle it was imported from ('' for rows computed here); empty strings without a `source`."""
    if "source" not in frame:
        return [""] * len(frame)
    return ["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in frame["source"]]


@dataclass(frozen=True)
class Layout:
    """What every renderer of one defense's table shares: the setting columns, each row's source, the decimal
    places per metric, the winning row per metric (or None) and the plain header (attack, settings, seeds, metrics
    with their arrows, utility figures)."""

    settings: list[str]
    sources: list[str]
    places: dict[str, int]
    wins: dict[str, int | None]
    header: list[str]


def layout(board: Board) -> Layout:
    """The shared layout of one defense's board, computed once for any output format."""
    frame = board.frame
    settings = distinguishing_columns(frame)
    places = {m: metric_decimals(frame, m) for m in board.metrics}
    wins = {m: winner(frame, m, info.higher_is_better, places[m]) for m, info in board.metrics.items()}
    header = ["attack", *settings, "seeds"]
    header += [f"{m} {info.arrow}".rstrip() for m, info in board.metrics.items()]
    header += [f"utility: {u}" for u in board.utilities]
    return Layout(settings, sources(frame), places, wins, header)


@dataclass(frozen=True)
class Notes:
    """What a table says below itself, as plain text; each renderer escapes and marks it up."""

    samples: str
    conventions: list[tuple[str, str]]
    missing: list[tuple[str, str]]
    caveats: list[tuple[str, str]]
    absent: list[tuple[str, str]]  # metrics without a value in any row, with why: one line under the table
    dataset_note: str
    sources: list[tuple[str, str]]
    provenance: list[tuple[str, str, str]]  # (row label, config id, run ids)
    command: str


def notes(board: Board, command: str) -> Notes:
    """The header/footnote facts of one table: sample counts, conventions, missing metrics, provenance."""
    frame = board.frame
    common = common_settings(frame)
    parts = []
    if "n_train" in common and "n_test" in common:
        parts.append(f"{common['n_train']} auxiliary (attacker) / {common['n_test']} private (scored) images per run")
    elif "n_test" in common:
        parts.append(f"{common['n_test']} private (scored) images per run")
    elif "n_train" in common:
        parts.append(f"{common['n_train']} auxiliary (attacker) images per run")
    for key in ("profile", "extractor", "aux_dataset"):
        if key in common and not (key == "aux_dataset" and str(common[key]) == board.dataset):
            parts.append(f"{key} {common[key]}")
    n_tests = {int(v) for v in pd.to_numeric(frame.get("n_test", pd.Series(dtype=float)), errors="coerce").dropna()}
    odd = [f"{m} on {', '.join(map(str, i.sample_counts))}" for m, i in board.metrics.items()
           if i.sample_counts and set(i.sample_counts) != n_tests]
    if odd:
        parts.append("metrics scored on other counts: " + "; ".join(odd))
    conv = [(m, " | ".join(i.conventions)) for m, i in board.metrics.items() if i.conventions]
    missing = [(m, "; ".join(i.details)) for m, i in board.metrics.items() if i.details]
    caveats = [(m, "; ".join(i.caveats)) for m, i in board.metrics.items() if i.caveats]
    absent = [(m, "; ".join(i.details) or "not computed") for m, i in board.absent.items()]
    dnotes = sorted({str(v) for v in frame.get("dataset_note", pd.Series(dtype=str)) if str(v) not in ("", "nan")})
    labels = row_labels(frame)
    src = [(lab, s) for lab, s in zip(labels, sources(frame)) if s]
    prov = [(lab, str(r["config_id"]), str(r["run_ids"])) for lab, (_, r) in zip(labels, frame.iterrows())]
    return Notes("; ".join(parts), conv, missing, caveats, absent, "; ".join(dnotes), src, prov, command)


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def merge_parts(texts: list[str]) -> str:
    """Per-row texts said once: split at '; ', and the parts that differ only in their numbers merged into one part
    with each differing number shown as the range over the rows (`no face detected in 0–18/200 reconstructions`)."""
    groups: dict[str, list[list[str]]] = {}
    for part in (p.strip() for t in texts for p in t.split("; ")):
        if part:
            groups.setdefault(_NUMBER.sub("\0", part), []).append(_NUMBER.findall(part))
    out = []
    for template, numbers in groups.items():
        slots = []
        for values in zip(*numbers):
            lo, hi = min(values, key=float), max(values, key=float)
            slots.append(lo if float(lo) == float(hi) else f"{lo}–{hi}")
        it = iter(slots)
        out.append(re.sub("\0", lambda _: next(it), template))
    return "; ".join(out)


BEST_RULE = ("best value in bold only when it is not tied with the runner-up at the shown precision and its "
             "mean ± std band does not overlap the runner-up's (one seed: no band)")
