"""Write CONSTRUCTED 'recognisable' answers for every reconstruction of a results folder, as a CSV that
`bench annotate import` reads: a demonstration of the annotation and correlation pipeline, never a result.

Each reconstruction gets one answer from each of two made-up annotators (`constructed-demo-1`, `constructed-demo-2`):
a seeded coin flip, with the second annotator copying the first 3 times in 4. The answers say nothing about the
images, so the correlations computed from them say nothing about the metrics; every output of `bench correlate`
that uses them says "constructed annotations, not human judgements".

    python examples/constructed_annotations.py --results DIR --out constructed.csv
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

from bench.store import Store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=Path("bench-results"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    rows = []
    with Store(args.results / "bench.sqlite") as st:
        for run in st.runs(status="done"):
            samples = sorted({(r["sample_index"], r["sample_id"]) for r in st.sample_metrics(run["run_id"])})
            for index, sid in samples:
                first = rng.random() < 0.5
                second = first if rng.random() < 0.75 else not first
                for annotator, label in (("constructed-demo-1", first), ("constructed-demo-2", second)):
                    rows.append({"kind": "recognisable", "run_id": run["run_id"], "sample_index": index,
                                 "sample_id": sid, "label": int(label), "annotator": annotator})
    with args.out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["kind", "run_id", "sample_index", "sample_id", "label", "annotator"])
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} constructed answers (not human judgements) written to {args.out}")


if __name__ == "__main__":
    main()
