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
from typing import Any, Iterable, Sequence

from bench.errors import BenchError
from bench.images import IMAGE_SUFFIXES

COLUMNS = ("kind", "run_id", "source", "sample_index", "sample_id", "label", "run_b", "sample_index_b", "choice",
           "annotator", "created", "updated", "item", "original")
CONSTRUCTED_PREFIX = "constructed"
CONSTRUCTED_NOTE = "constructed annotations, not human judgements"
_YES = {"1", "1.0", "yes", "y", "true"}
_NO = {"0", "0.0", "no", "n", "false"}


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
    """Upsert the rows of a CSV file; every row is checked before anything is written (a bad row changes nothing)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"{path}: cannot read the CSV file ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = {"kind", "sample_index", "sample_id", "annotator"} - set(reader.fieldnames or ())
    if missing:
        raise BenchError(f"{path}: missing column(s) {', '.join(sorted(missing))} (the header needs at least "
                         f"kind, run_id or source, sample_index, sample_id, label or choice, annotator)")
    runs = {r["run_id"] for r in store.runs()}
    labels, pairs = [], []
    for line, row in enumerate(reader, start=2):
        def bad(why: str) -> BenchError:
            return BenchError(f"{path}, line {line}: {why}")

        kind = (row.get("kind") or "").strip()
        run_id, source = (row.get("run_id") or "").strip() or None, (row.get("source") or "").strip() or None
        annotator = (row.get("annotator") or "").strip()
        if not annotator:
            raise bad("empty annotator")
        if (run_id is None) == (source is None):
            raise bad("give a run_id or a source (an imported set that belongs to no run), not both or neither")
        if run_id is not None and run_id not in runs:
            raise bad(f"run {run_id} is not in this results store")
        index = _int(row.get("sample_index"), bad, "sample_index")
        sid = (row.get("sample_id") or "").strip()
        if not sid:
            raise bad("empty sample_id")
        when = _time(row.get("updated"), bad)
        if kind == "recognisable":
            value = (row.get("label") or "").strip().lower()
            if value not in _YES | _NO:
                raise bad(f"label {row.get('label')!r} is not 1/0 (yes/no)")
            labels.append(dict(run_id=run_id, sample_index=index, sample_id=sid, kind=kind,
                               label=1.0 if value in _YES else 0.0, annotator=annotator, source=source,
                               original=(row.get("original") or None), item=(row.get("item") or None), when=when))
        elif kind == "pair":
            run_b = (row.get("run_b") or "").strip() or None
            if source is None and run_b not in runs:
                raise bad(f"run_b {run_b!r} is not in this results store")
            choice = (row.get("choice") or "").strip().lower()
            if choice not in ("a", "b"):
                raise bad(f"choice {row.get('choice')!r} is not a or b")
            index_b = _int(row.get("sample_index_b"), bad, "sample_index_b")
            if (run_id or source, index) == (run_b or source, index_b):
                raise bad("a pair needs two different reconstructions")
            pairs.append(dict(a=(run_id or "", index), b=(run_b or "", index_b), sample_id=sid, closer=choice,
                              annotator=annotator, source=source, when=when))
        else:
            raise bad(f"kind {kind!r} is not recognisable or pair")
    for kw in labels:
        store.set_annotation(**kw)
    for kw in pairs:
        store.set_pair_annotation(**kw)
    return {"recognisable": len(labels), "pair": len(pairs)}


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
def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def import_semsim_layout(store: Any, root: Path, source: str | None = None,
                         annotator: str = "semsim-release") -> dict[str, Any]:
    """The SemSim release layout as 'recognisable' labels of source `source` (default semsim-release:<folder>):
    `<id>/` holds the original `*_ori.*` and recognisable reconstructions (label 1), `-<id>/` the unrecognisable
    ones (label 0). `others/` holds negatives tied to no original; they are counted, not imported.

    Rows are numbered in sorted (id, folder, file) order, so importing the same folder again updates them.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise BenchError(f"{root}: no such folder (the SemSim layout: <id>/ with *_ori.png and recognisable "
                         f"reconstructions, -<id>/ with unrecognisable ones, others/)")
    source = source or f"semsim-release:{root.resolve().name}"
    dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".") and d.name != "others"]
    ids = sorted({d.name.lstrip("-") for d in dirs if d.name.lstrip("-")})
    rows, no_original = [], []
    for ident in ids:
        folders = [(root / ident, 1.0), (root / f"-{ident}", 0.0)]
        files = [(p, label) for d, label in folders if d.is_dir() for p in _images(d)]
        originals = [p for p, _ in files if p.stem.endswith("_ori")]
        if len(originals) != 1:
            if originals:
                raise BenchError(f"{root}: id {ident!r} has {len(originals)} originals (*_ori files); keep one")
            no_original.append(ident)
            continue
        original = originals[0].relative_to(root).as_posix()
        rows += [(ident, p.relative_to(root).as_posix(), label, original) for p, label in files
                 if p != originals[0]]
    for index, (ident, item, label, original) in enumerate(rows):
        store.set_annotation(None, index, ident, "recognisable", label, annotator, source=source,
                             original=original, item=item)
    others = len(_images(root / "others")) if (root / "others").is_dir() else 0
    if not rows:
        raise BenchError(f"{root}: no reconstruction with an original found in the SemSim layout "
                         f"({len(ids)} ids, {len(no_original)} without a *_ori original)")
    return {"source": source, "rows": len(rows), "recognisable": sum(r[2] == 1.0 for r in rows),
            "unrecognisable": sum(r[2] == 0.0 for r in rows), "ids": len(ids) - len(no_original),
            "ids_without_original": no_original, "others_not_imported": others}
