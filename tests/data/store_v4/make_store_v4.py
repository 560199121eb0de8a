"""Builds store_v4.sql: a results store written by the code of schema 4 (run it with that code installed).

    git worktree add ../bench-v4 7324c37       # store schema 4: the commit the committed dump was made from
    PYTHONPATH=../bench-v4 python tests/data/store_v4/make_store_v4.py   # bench imported from there (it checks)

It copies faces/*.png to a temporary folder with fixed modification times (MTIME_NS + index), runs mean-image at
the smoke profile there with seeds 0 and 1, on a second copy that is deleted afterwards (seed 0), and on the
generated synthetic-faces set (seed 0), then dumps the store as SQL with the temporary folder replaced by @ROOT@.
test_store_migration.py recreates the folder with the same times and migrates the dump.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MTIME_NS = 1_700_000_000_123_456_789


def place(dst: Path) -> Path:
    """faces/*.png copied to `dst` with modification times MTIME_NS + index (as the migration test does)."""
    dst.mkdir(parents=True)
    for k, src in enumerate(sorted((HERE / "faces").glob("*.png"))):
        shutil.copyfile(src, dst / src.name)
        os.utime(dst / src.name, ns=(MTIME_NS + k, MTIME_NS + k))
    return dst


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="store-v4-")).resolve()
    os.environ["BENCH_HOME"] = str(tmp / "home")
    from bench.run.plan import RunRequest
    from bench.run.runner import execute
    from bench.store.db import SCHEMA_VERSION

    assert SCHEMA_VERSION == 4, f"run this with the schema-4 code (this one writes schema {SCHEMA_VERSION})"
    print(f"bench from {Path(sys.modules['bench'].__file__).parent}", file=sys.stderr)
    faces, gone = place(tmp / "faces"), place(tmp / "gone")
    common = dict(attack="mean-image", profile="smoke", n_train=8, n_test=4, metrics=("mse", "psnr"),
                  results=tmp / "results", progress=False)
    for seed in (0, 1):
        execute(RunRequest(dataset="folder", data_root=faces, seed=seed, **common))
    execute(RunRequest(dataset="folder", data_root=gone, seed=0, **common))
    execute(RunRequest(dataset="synthetic-faces", seed=0, **common))
    shutil.rmtree(gone)
    db = sqlite3.connect(tmp / "results" / "bench.sqlite")
    text = "\n".join(db.iterdump()).replace(str(tmp), "@ROOT@")
    text = re.sub(r"(?<=[,(])(-?)Inf(?=[,)])", r"\g<1>9e999", text)  # iterdump writes inf as Inf, not valid SQL
    db.close()
    (HERE / "store_v4.sql").write_text(text + "\n")
    shutil.rmtree(tmp)
    print(f"wrote {HERE / 'store_v4.sql'}", file=sys.stderr)


if __name__ == "__main__":
    main()
