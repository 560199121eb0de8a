"""Annotations in and out of the store: one CSV format for both kinds, and the SemSim release's folder layout.

CSV columns (a header row; order free on import):
  kind            `recognisable` or `pair`
  run_id          the run of the reconstruction (of reconstruction a for a pair); empty when `source` is given
  source          the imported set a row belongs to when it belongs to no run (e.g. semsim-release:NAME)
  sample_index    the reconstruction's index in its run (of a for a pair)
  sample_id       the original's id in its dataset
  label           recognisable: 1 (yes) or 0 (no); also yes/no, true/false
  run_b, sample_index_b   pair: the second reconstruction
  choice          pair: `a` or `b`, the reconstruction judged closer to the original
  annotator       who answered (ids beginning `constructed` mark constructed, not human, answers)
  created, updated        Unix times (optional on import; kept when given)
  item, original  source rows: the reconstruction's and the original's file inside the source
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from bench.annotations.semsim_layout import parse_layout
from bench.errors import BenchError

COLUMNS = ("kind", "run_id", "source", "sample_index", "sample_id", "label", "run_b", "sample_index_b", "choice",
           "annotator", "created", "updated", "item", "original")
CONSTRUCTED_PREFIX = "constructed"
CONSTRUCTED_NOTE = "constructed annotations, not human judgements"
_YES = {"1", "1.0", "yes", "y", "true"}
_NO = {"0", "0.0", "no", "n", "false"}
MAX_FIELD = 1000  # characters of one CSV field on import (ids, names, times): anything longer is not an answer


def is_constructed(annotator: str) -> bool:
    """Annotator ids beginning with `constructed` mark answers made up for a demonstration or a test."""
    return annotator.lower().startswith(CONSTRUCTED_PREFIX)


def export_rows(store: Any, run_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Every annotation of the store (or of runs `run_ids`) as CSV rows, recognisable then pairs."""
    rows = []
    for a in store.annotations(run_ids=run_ids):
        rows.append({"kind": a["kind"], "run_id": a["run_id"] or "", "source": a["source"] or "",
                     "sample_index": a["sample_index"], "sample_id": a["sample_id"], "label": _num(a["label"]),
                     "annotator": a["annotator"], "created": repr(a["created"]), "updated": repr(a["updated"]),
                     "item": a["item"] or "", "original": a["original"] or ""})
    for p in store.pair_annotations(run_ids=run_ids):
        rows.append({"kind": "pair", "run_id": p["run_a"] or "", "source": p["source"] or "",
                     "sample_index": p["index_a"], "sample_id": p["sample_id"], "run_b": p["run_b"] or "",
                     "sample_index_b": p["index_b"], "choice": p["choice"], "annotator": p["annotator"],
                     "created": repr(p["created"]), "updated": repr(p["updated"])})
    return rows


def to_csv(rows: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k, "") for k in COLUMNS})
    return buf.getvalue()


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def import_csv(store: Any, path: Path) -> dict[str, int]:
    """Upsert the rows of a CSV file, read as a stream in one store transaction: every row is checked against the
    store (its run exists, the sample index is one of that run's samples and the sample id is the one it holds) and
    a bad row is an error naming its line that rolls the whole file back (the store is unchanged)."""
    path = Path(path)
    try:
        fh = open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise BenchError(f"{path}: cannot read the CSV file ({exc.strerror or exc})") from None
    with fh:
        lines = _CountedLines(fh)
        reader = csv.DictReader(lines)
        try:
            fields = reader.fieldnames
        except (csv.Error, UnicodeDecodeError) as exc:
            raise BenchError(f"{path}, line 1: not a readable CSV header ({exc})") from None
        missing = {"kind", "sample_index", "sample_id", "annotator"} - set(fields or ())
        if missing:
            raise BenchError(f"{path}: missing column(s) {', '.join(sorted(missing))} (the header needs at least "
                             f"kind, run_id or source, sample_index, sample_id, label or choice, annotator)")
        return store.import_annotations(_checked_rows(store, reader, lines, path))


class _CountedLines:
    """The lines of a file, counted as the CSV reader takes them (its own line_num lags behind on a csv.Error)."""

    def __init__(self, fh: Any) -> None:
        self.fh, self.count = fh, 0

    def __iter__(self) -> "_CountedLines":
        return self

    def __next__(self) -> str:
        line = next(self.fh)
        self.count += 1
        return line


class _RunSamples:
    """The store's runs and, loaded once per run when a row first names it, the run's {sample index: sample id}."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.runs = {r["run_id"] for r in store.runs()}
        self._ids: dict[str, dict[int, str]] = {}

    def check(self, run_id: str, index: int, sample_id: str, bad: Any, what: str = "") -> None:
        if run_id not in self.runs:
            raise bad(f"run{what} {run_id} is not in this results store")
        if run_id not in self._ids:
            self._ids[run_id] = self.store.sample_ids(run_id)
        ids = self._ids[run_id]
        if index not in ids:
            raise bad(f"sample_index{what} {index} is not a sample of run {run_id} "
                      f"({len(ids)} samples{f', indices 0..{max(ids)}' if ids else ''})")
        if ids[index] != sample_id:
            raise bad(f"sample_id {sample_id!r} is not the original of run {run_id}'s sample {index} "
                      f"({ids[index]!r})")


def _checked_rows(store: Any, reader: csv.DictReader, lines: _CountedLines,
                  path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each row of `reader` checked and turned into a store upsert, one at a time; a BenchError at the first bad one."""
    known = _RunSamples(store)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise BenchError(f"{path}, line {lines.count}: {exc} (a field holds at most {MAX_FIELD} characters)"
                             if "field limit" in str(exc) else f"{path}, line {lines.count}: {exc}") from None
        except UnicodeDecodeError as exc:
            raise BenchError(f"{path}, after line {lines.count}: not UTF-8 text ({exc.reason})") from None
        line = lines.count

        def bad(why: str) -> BenchError:
            return BenchError(f"{path}, line {line}: {why}")

        if None in row:
            raise bad(f"{len(row[None]) + len(reader.fieldnames or ())} fields, the header has "
                      f"{len(reader.fieldnames or ())}")
        for name, value in row.items():
            if value is not None and len(value) > MAX_FIELD:
                raise bad(f"field {name!r} is {len(value)} characters long (at most {MAX_FIELD})")
        kind = (row.get("kind") or "").strip()
        run_id, source = (row.get("run_id") or "").strip() or None, (row.get("source") or "").strip() or None
        annotator = (row.get("annotator") or "").strip()
        if not annotator:
            raise bad("empty annotator")
        if (run_id is None) == (source is None):
            raise bad("give a run_id or a source (an imported set that belongs to no run), not both or neither")
        index = _int(row.get("sample_index"), bad, "sample_index")
        sid = (row.get("sample_id") or "").strip()
        if not sid:
            raise bad("empty sample_id")
        if run_id is not None:
            known.check(run_id, index, sid, bad)
        when = _time(row.get("updated"), bad)
        if kind == "recognisable":
            value = (row.get("label") or "").strip().lower()
            if value not in _YES | _NO:
                raise bad(f"label {row.get('label')!r} is not 1/0 (yes/no)")
            yield kind, dict(run_id=run_id, sample_index=index, sample_id=sid, kind=kind,
                             label=1.0 if value in _YES else 0.0, annotator=annotator, source=source,
                             original=(row.get("original") or None), item=(row.get("item") or None), when=when)
        elif kind == "pair":
            run_b = (row.get("run_b") or "").strip() or None
            choice = (row.get("choice") or "").strip().lower()
            if choice not in ("a", "b"):
                raise bad(f"choice {row.get('choice')!r} is not a or b")
            index_b = _int(row.get("sample_index_b"), bad, "sample_index_b")
            if source is None:
                if run_b is None:
                    raise bad("a pair of a run needs run_b")
                known.check(run_b, index_b, sid, bad, "_b")
            if (run_id or source, index) == (run_b or source, index_b):
                raise bad("a pair needs two different reconstructions")
            yield kind, dict(a=(run_id or "", index), b=(run_b or "", index_b), sample_id=sid, closer=choice,
                             annotator=annotator, source=source, when=when)
        else:
            raise bad(f"kind {kind!r} is not recognisable or pair")


def _int(value: Any, bad: Any, name: str) -> int:
    try:
        out = int(str(value).strip())
    except ValueError:
        raise bad(f"{name} {value!r} is not an integer") from None
    if out < 0:
        raise bad(f"{name} {out} is negative")
    return out


def _time(value: Any, bad: Any) -> float | None:
    if value is None or not str(value).strip():
        return None
    try:
        out = float(value)
    except ValueError:
        raise bad(f"time {value!r} is not a Unix time in seconds") from None
    if not math.isfinite(out):
        raise bad(f"time {value!r} is not finite")
    return out


# --------------------------------------------------------------------------------------- SemSim release layout
def import_semsim_layout(store: Any, root: Path, source: str | None = None,
                         annotator: str = "semsim-release") -> dict[str, Any]:
    """The SemSim release layout (parsed by bench/annotations/semsim_layout.py) as 'recognisable' labels of source
    `source` (default semsim-release:<folder>): the reconstructions of `<id>/` get label 1, those of `-<id>/`
    label 0. `others/` holds negatives tied to no original; they are counted, not imported.

    Rows are numbered in the layout's order (sorted id, `<id>/` then `-<id>/`, sorted file), so importing the same
    folder again updates them.
    """
    layout = parse_layout(root)
    root = layout.root
    source = source or f"semsim-release:{root.resolve().name}"
    rows = []
    for entry in layout.with_original:
        original = entry.original.relative_to(root).as_posix()
        rows += [(entry.ident, p.relative_to(root).as_posix(), label, original)
                 for files, label in ((entry.recognisable, 1.0), (entry.unrecognisable, 0.0)) for p in files]
    for index, (ident, item, label, original) in enumerate(rows):
        store.set_annotation(None, index, ident, "recognisable", label, annotator, source=source,
                             original=original, item=item)
    no_original = layout.without_original
    if not rows:
        raise BenchError(f"{root}: no reconstruction with an original found in the SemSim layout "
                         f"({len(layout.ids)} ids, {len(no_original)} without a *_ori original)")
    return {"source": source, "rows": len(rows), "recognisable": sum(r[2] == 1.0 for r in rows),
            "unrecognisable": sum(r[2] == 0.0 for r in rows), "ids": len(layout.ids) - len(no_original),
            "ids_without_original": no_original, "others_not_imported": len(layout.others)}
