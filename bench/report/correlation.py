"""Metric-vs-human correlation over a results store: the points (per configuration or per reconstruction), the
statistics of `bench.annotations.correlation`, a CSV and one scatter plot per metric.

Human score: the share of "recognisable" answers; per reconstruction the mean over its annotators, per configuration
(SemSim's protocol) the mean of that over the configuration's annotated reconstructions. Metric value: per
reconstruction the stored per-sample value, per configuration the set-level value (mean over the configuration's
seeds). Every metric is oriented by its stored direction (`higher_is_better`) so that a positive coefficient means
the metric agrees with humans: more recognisable reconstructions get better scores.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from bench.annotations.correlation import (METHODS, Agreement, bootstrap_interval, correlation,
                                           forced_choice_agreement, krippendorff_alpha_nominal)
from bench.annotations.transfer import CONSTRUCTED_NOTE, is_constructed
from bench.errors import BenchError

LEVELS = ("config", "sample")
UNDEFINED = "undefined"
PAIR_COLUMNS = ("metric", "orientation", "answers", "pairs", "agreement", "ci_low", "ci_high", "p", "metric_ties",
                "status", "note", "annotators", "agreement_alpha", "agreement_note", "annotations")
STAT_COLUMNS = ("level", "metric", "orientation", "method", "n", "r", "p", "ci_low", "ci_high", "ci_level",
                "ci_resamples", "ci_dropped", "status", "note", "annotators", "agreement_alpha", "agreement_note",
                "annotations")


def extractor_label(spec: dict[str, Any]) -> str:
    """The victim of a run as `name(k=v,...)` from its spec (e.g. a gradient victim's architecture), so that points of
    configurations that differ only in the victim (SemSim's protocol: attack x defense x model) can be told apart."""
    from bench.params import label

    ext = spec.get("extractor")
    if not isinstance(ext, dict):
        return str(ext or "")
    # Scalar parameters only: nested records (e.g. a trained victim's training settings) stay in the run's spec.
    params = {k: v for k, v in ext.items() if k not in ("name", "version") and isinstance(v, (str, int, float, bool))}
    return label(str(ext.get("name", "")), params)


@dataclass
class Points:
    """Paired values for one metric: oriented metric value, human score, and what each point is."""

    metric: str
    higher_is_better: bool | None
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)
    problem: str = ""


@dataclass
class CorrelationReport:
    level: str
    rows: list[dict[str, Any]]
    points: dict[str, Points]
    agreement: Agreement
    annotators: list[str]
    constructed: bool
    csv_path: Path
    points_path: Path
    plots: list[Path]
    notes: list[str]
    pair_rows: list[dict[str, Any]] = field(default_factory=list)
    pairs_path: Path | None = None


def _human_scores(store: Any) -> tuple[dict[tuple[str, int], float], dict[tuple[str, int], dict[str, float]], int]:
    """(run, index) -> mean label; (run, index) -> {annotator: label}; how many source-only rows were left out."""
    answers: dict[tuple[str, int], dict[str, float]] = {}
    from_sources = 0
    for a in store.annotations(kind="recognisable"):
        if a["run_id"] is None:
            from_sources += 1
            continue
        answers.setdefault((a["run_id"], int(a["sample_index"])), {})[a["annotator"]] = float(a["label"])
    means = {k: sum(v.values()) / len(v) for k, v in answers.items()}
    return means, answers, from_sources


def _direction(metric: str, dirs: set[bool | None]) -> tuple[bool | None, str]:
    known = {d for d in dirs if d is not None}
    if len(known) != 1:
        return None, ("its direction is not stored" if not known else "its stored direction differs between runs")
    return known.pop(), ""


def collect(store: Any, level: str, metrics: Sequence[str] | None) -> tuple[dict[str, Points], dict, list[str], int]:
    """The points of every metric at `level`, the per-item answers, the notes, and the source-only rows left out."""
    if level not in LEVELS:
        raise BenchError(f"--level {level}: use one of {', '.join(LEVELS)}")
    human, answers, from_sources = _human_scores(store)
    notes: list[str] = []
    if from_sources:
        notes.append(f"{from_sources} imported annotation(s) belong to no run (e.g. the SemSim release) and have no "
                     f"metric values here; they are not correlated")
    runs = {rid: store.run(rid) for rid in sorted({rid for rid, _ in human})}
    missing = [rid for rid, r in runs.items() if r is None]
    if missing:
        notes.append(f"{len(missing)} annotated run(s) are not in the store and are left out: {', '.join(missing[:3])}")
    runs = {rid: r for rid, r in runs.items() if r is not None}
    set_values = {rid: store.set_metrics(rid) for rid in runs}
    dirs: dict[str, set[bool | None]] = {}
    for values in set_values.values():
        for m, v in values.items():
            dirs.setdefault(m, set()).add(v["higher_is_better"])
    if level == "sample":
        per_sample: dict[tuple[str, int], dict[str, float]] = {}
        for rid in runs:
            for row in store.sample_metrics(rid):
                key = (rid, int(row["sample_index"]))
                if key in human and row["status"] == "ok" and row["value"] is not None:
                    per_sample.setdefault(key, {})[row["metric"]] = float(row["value"])
        names = sorted({m for v in per_sample.values() for m in v})
    else:
        names = sorted({m for values in set_values.values() for m, v in values.items() if v["status"] == "ok"})
    wanted = list(metrics) if metrics else names
    if not metrics:  # say which stored metrics were left out, and why
        for m in sorted({m for values in set_values.values() for m in values} - set(names)):
            statuses = sorted({v["status"] + (f": {v['detail']}" if v.get("detail") else "")
                               for values in set_values.values() for name, v in values.items()
                               if name == m and v["status"] != "ok"})
            if level == "sample" and not statuses:
                why = "no per-sample values for the annotated reconstructions (a set-level metric)"
            else:
                why = "no ok value for the annotated runs" + (f" ({'; '.join(statuses)})" if statuses else "")
            notes.append(f"left out {m}: {why}")
    out: dict[str, Points] = {}
    for metric in wanted:
        hib, why = _direction(metric, dirs.get(metric, set()))
        pts = Points(metric, hib)
        out[metric] = pts
        if metric not in names:
            pts.problem = f"undefined: no {'per-sample' if level == 'sample' else 'set-level'} values of {metric} " \
                          f"for the annotated runs"
            continue
        if hib is None:
            pts.problem = f"undefined: {why}, so it cannot be oriented"
            continue
        sign = 1.0 if hib else -1.0
        if level == "sample":
            for key in sorted(human):
                if key[0] in runs and metric in per_sample.get(key, {}):
                    v = per_sample[key][metric]
                    spec = json.loads(runs[key[0]]["spec_json"])
                    pts.labels.append({"run_id": key[0], "sample_index": key[1], "attack": spec["attack"],
                                       "defense": spec["defense"], "dataset": spec["dataset"],
                                       "extractor": extractor_label(spec), "annotators": len(answers[key])})
                    pts.raw.append(v)
                    pts.x.append(sign * v)
                    pts.y.append(human[key])
        else:
            groups: dict[str, list[str]] = {}
            for rid, r in runs.items():
                groups.setdefault(r["config_id"] or rid, []).append(rid)
            for cid, rids in sorted(groups.items()):
                vals = [set_values[r][metric] for r in rids if metric in set_values[r]]
                if len(vals) != len(rids) or any(v["status"] != "ok" or v["value"] is None for v in vals):
                    continue  # counted below: a configuration without an ok value on every seed is left out
                items = [k for k in human if k[0] in rids]
                spec = json.loads(runs[rids[0]]["spec_json"])
                v = sum(float(x["value"]) for x in vals) / len(vals)
                pts.labels.append({"config_id": cid, "attack": spec["attack"], "defense": spec["defense"],
                                   "dataset": spec["dataset"], "extractor": extractor_label(spec),
                                   "profile": spec["profile"], "runs": len(rids), "reconstructions": len(items)})
                pts.raw.append(v)
                pts.x.append(sign * v)
                pts.y.append(sum(human[k] for k in items) / len(items))
            left = len(groups) - len(pts.x)
            if left:
                notes.append(f"{metric}: {left} configuration(s) without an ok value on every run left out")
    return out, answers, notes, from_sources


def forced_choice_rows(store: Any, metrics: Sequence[str] | None, n_resamples: int, seed: int) -> list[dict[str, Any]]:
    """Two-alternative forced choice: per metric, how often it prefers the reconstruction annotators chose."""
    answers = [p for p in store.pair_annotations() if p["run_a"] and p["run_b"] and p["source"] is None]
    if not answers:
        return []
    runs = sorted({p["run_a"] for p in answers} | {p["run_b"] for p in answers})
    values: dict[tuple[str, int], dict[str, float]] = {}
    dirs: dict[str, set[bool | None]] = {}
    for rid in runs:
        for row in store.sample_metrics(rid):
            if row["status"] == "ok" and row["value"] is not None:
                values.setdefault((rid, int(row["sample_index"])), {})[row["metric"]] = float(row["value"])
        for m, v in store.set_metrics(rid).items():
            dirs.setdefault(m, set()).add(v["higher_is_better"])
    units: dict[tuple, dict[str, str]] = {}
    for p in answers:
        units.setdefault((p["run_a"], p["index_a"], p["run_b"], p["index_b"]), {})[p["annotator"]] = p["choice"]
    annotators = sorted({p["annotator"] for p in answers})
    agreement = krippendorff_alpha_nominal(units)
    label = CONSTRUCTED_NOTE if any(is_constructed(a) for a in annotators) else "human"
    names = sorted({m for v in values.values() for m in v})
    out = []
    for metric in (list(metrics) if metrics else names):
        hib, why = _direction(metric, dirs.get(metric, set()))
        row: dict[str, Any] = {
            "metric": metric, "annotators": len(annotators), "annotations": label,
            "agreement_alpha": UNDEFINED if agreement.alpha is None else agreement.alpha,
            "agreement_note": ("Krippendorff's alpha (nominal) over pairs answered by two or more annotators"
                               if agreement.status == "ok" else f"agreement: {agreement.reason}"),
            "orientation": ("" if hib is None else
                            "as stored (higher is better)" if hib else "negated (lower is better)")}
        diffs: list[float] = []
        human: list[int] = []
        pairs = set()
        if hib is not None:
            sign = 1.0 if hib else -1.0
            for p in answers:
                va = values.get((p["run_a"], int(p["index_a"])), {}).get(metric)
                vb = values.get((p["run_b"], int(p["index_b"])), {}).get(metric)
                if va is not None and vb is not None:
                    diffs.append(sign * (va - vb))
                    human.append(1 if p["choice"] == "a" else -1)
                    pairs.add((p["run_a"], p["index_a"], p["run_b"], p["index_b"]))
        fc = forced_choice_agreement(diffs, human, n_resamples, seed=seed)
        ok = hib is not None and fc.status == "ok"
        note = f"undefined: {why}, so it cannot be oriented" if hib is None else fc.reason
        row.update(answers=fc.n, pairs=len(pairs), agreement=_cell(fc.rate if ok else None),
                   ci_low=_cell(fc.lo if ok else None), ci_high=_cell(fc.hi if ok else None),
                   p=_cell(fc.p if ok else None), metric_ties=fc.ties, status="ok" if ok else UNDEFINED, note=note)
        out.append(row)
    return out


def _cell(v: float | None) -> float | str:
    """A table cell: the value at full precision, or the word 'undefined' (never NaN)."""
    return UNDEFINED if v is None else float(v)


def fmt(v: float | str, digits: int = 3) -> str:
    """A cell for reading: 3 decimals (p-values below 0.001 in e-notation), or 'undefined'."""
    if isinstance(v, str):
        return v
    return f"{v:.1e}" if 0 < abs(v) < 1e-3 else f"{v:.{digits}f}"


def correlate(results: Path, level: str = "config", metrics: Sequence[str] | None = None,
              out_dir: Path | None = None, n_resamples: int = 2000, seed: int = 0, ci_level: float = 0.95,
              plots: bool = True) -> CorrelationReport:
    """Compute, write (CSV, points CSV, scatter PNGs) and return the correlation report of a results folder."""
    from bench.store import Store

    results = Path(results).expanduser()
    db = results / "bench.sqlite"
    if not db.is_file():
        raise BenchError(f"no results store at {db}; give --results DIR, a folder `bench run` wrote")
    with Store(db) as store:
        points, answers, notes, _ = collect(store, level, metrics)
        choice_rows = forced_choice_rows(store, metrics, n_resamples, seed)
    if not answers and not choice_rows:
        raise BenchError(f"{db}: no 'recognisable' or pair annotations of runs in this store; collect some with "
                         f"`bench annotate serve` or `bench annotate import`")
    if not answers:
        notes.append("no 'recognisable' answers: only the pair (forced-choice) table is meaningful")
    annotators = sorted({a for unit in answers.values() for a in unit})
    constructed = any(is_constructed(a) for a in annotators)
    agreement = krippendorff_alpha_nominal(answers)
    agreement_note = (f"Krippendorff's alpha (nominal) over {agreement.units} item(s) answered by two or more of "
                      f"{agreement.annotators} annotators" if agreement.status == "ok"
                      else f"agreement: {agreement.reason}")
    label = CONSTRUCTED_NOTE if constructed else "human"
    rows = []
    for metric, pts in points.items():
        orientation = ("" if pts.higher_is_better is None else
                       "as stored (higher is better)" if pts.higher_is_better else "negated (lower is better)")
        for method in METHODS:
            row = {"level": level, "metric": metric, "orientation": orientation, "method": method,
                   "n": len(pts.x), "ci_level": ci_level, "annotators": len(annotators),
                   "agreement_alpha": UNDEFINED if agreement.alpha is None else f"{agreement.alpha:.4f}",
                   "agreement_note": agreement_note, "annotations": label}
            if pts.problem:
                c, ci = None, None
                row.update(status=UNDEFINED, note=pts.problem)
            else:
                c = correlation(pts.x, pts.y, method)
                ci = bootstrap_interval(pts.x, pts.y, method, n_resamples, ci_level, seed)
                note = c.reason or ci.reason
                if c.status == "ok" and ci.dropped:
                    note = (note + "; " if note else "") + f"{ci.dropped} constant bootstrap resample(s) dropped"
                row.update(status=c.status, note=note)
            row.update(r=_cell(c.r if c else None), p=_cell(c.p if c else None),
                       ci_low=_cell(ci.lo if ci else None), ci_high=_cell(ci.hi if ci else None),
                       ci_resamples=ci.n_resamples if ci else 0, ci_dropped=ci.dropped if ci else 0)
            rows.append(row)
    out_dir = Path(out_dir) if out_dir is not None else results / "correlation"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    csv_path = out_dir / f"correlation-{level}.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=STAT_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    points_path = out_dir / f"points-{level}.csv"
    with points_path.open("w", newline="") as f:
        keys = sorted({k for p in points.values() for lab in p.labels for k in lab})
        w = csv.DictWriter(f, fieldnames=["metric", *keys, "value", "oriented", "human_score", "annotations"],
                           lineterminator="\n")
        w.writeheader()
        for p in points.values():
            for lab, raw, x, y in zip(p.labels, p.raw, p.x, p.y):
                w.writerow({"metric": p.metric, **lab, "value": raw, "oriented": x, "human_score": y,
                            "annotations": label})
    made = [scatter(p, level, rows, out_dir, label) for p in points.values() if p.x] if plots else []
    report = CorrelationReport(level, rows, points, agreement, annotators, constructed, csv_path, points_path, made,
                               notes)
    report.pair_rows = choice_rows
    if report.pair_rows:
        report.pairs_path = out_dir / "pairs.csv"
        with report.pairs_path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=PAIR_COLUMNS, lineterminator="\n")
            w.writeheader()
            w.writerows(report.pair_rows)
    return report


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def scatter(p: Points, level: str, rows: list[dict[str, Any]], out_dir: Path, label: str) -> Path:
    """One PNG: oriented metric value against the human score, with the Spearman figure in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sp = next(r for r in rows if r["metric"] == p.metric and r["method"] == "spearman")
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.scatter(p.x, p.y, s=18, alpha=0.7)
    sign = "" if p.higher_is_better else "−"
    ax.set_xlabel(f"{sign}{p.metric} ({'higher' if p.higher_is_better else 'lower'} is better; oriented)")
    ax.set_ylabel("share judged recognisable")
    title = f"{p.metric}, {level} level: Spearman {fmt(sp['r'])}"
    if sp["status"] == "ok":
        title += f" [{fmt(sp['ci_low'])}, {fmt(sp['ci_high'])}]"
    ax.set_title(f"{title}, n={len(p.x)}", fontsize=9)
    if label != "human":
        fig.text(0.5, 0.005, label, ha="center", va="bottom", fontsize=8, color="#b00")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = out_dir / f"scatter-{level}-{_safe(p.metric)}.png"
    fig.savefig(path)
    plt.close(fig)
    return path
