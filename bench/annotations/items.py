"""What can be annotated in a results folder: the reconstructions of the selected runs (one item each) and, for
two-alternative forced choice, pairs of reconstructions of the same original by two runs on the same dataset.

Images are found only through (run id, sample index) lookups in this catalogue, built from the store and the run
folders; a client never names a file.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from bench.errors import BenchError

TASKS = ("recognisable", "pair")
QUESTIONS = {
    "recognisable": "Is the reconstruction recognisable as the original?",
    "pair": "Which reconstruction is closer to the original?",
}


@dataclass(frozen=True)
class Item:
    """One question: `refs` are the (run id, sample index) of the reconstruction, or of the left and right ones."""

    key: str
    kind: str
    sample_id: str
    refs: tuple[tuple[str, int], ...]


def item_key(kind: str, refs: Sequence[tuple[str, int]]) -> str:
    return kind[0] + ":" + ":".join(f"{r}:{i}" for r, i in refs)


class Catalogue:
    """The selected (finished) runs of a results folder, their reconstructions and the items built from them."""

    def __init__(self, results: Path, run_ids: Sequence[str] | None = None, task: str = "recognisable") -> None:
        from bench.run_files import recon_path
        from bench.store import Store

        if task not in TASKS:
            raise BenchError(f"unknown annotation task {task!r}; use one of {', '.join(TASKS)}")
        self.results = Path(results).expanduser()
        self.task = task
        db = self.results / "bench.sqlite"
        if not db.is_file():
            raise BenchError(f"no results store at {db}; give --results DIR, a folder `bench run` wrote")
        with Store(db) as store:
            done = {r["run_id"]: r for r in store.runs(status="done")}
            self.runs = {rid: done[rid] for rid in _select(done, run_ids)}
            self.samples: dict[tuple[str, int], tuple[str, Path]] = {}
            for rid in self.runs:
                seen = {(int(r["sample_index"]), str(r["sample_id"])) for r in store.sample_metrics(rid)}
                for index, sid in sorted(seen):
                    path = recon_path(self.results / "runs" / rid, index, sid)
                    if path.is_file():
                        self.samples[(rid, index)] = (sid, path)
        if not self.samples:
            raise BenchError(f"the selected runs ({', '.join(self.runs)}) have no saved reconstructions in "
                             f"{self.results / 'runs'}")
        self.specs = {rid: json.loads(r["spec_json"]) for rid, r in self.runs.items()}
        self.items = self._pairs() if task == "pair" else [
            Item(item_key("recognisable", [ref]), "recognisable", sid, (ref,))
            for ref, (sid, _) in self.samples.items()]
        if not self.items:
            raise BenchError("no pair to compare: pairs need two selected runs on the same dataset that "
                             "reconstructed the same originals")
        # A fixed shuffled order (the same for everyone, so resuming is exact), not run after run.
        self.items.sort(key=lambda it: hashlib.sha256(it.key.encode()).hexdigest())
        self.by_key = {it.key: it for it in self.items}
        self._originals: dict[tuple[str, int], bytes] = {}

    def _pairs(self) -> list[Item]:
        groups: dict[str, list[str]] = {}
        for rid, spec in self.specs.items():
            groups.setdefault(json.dumps([spec["dataset"], spec.get("data_root")]), []).append(rid)
        out = []
        for rids in groups.values():
            for ra, rb in itertools.combinations(sorted(rids), 2):
                index_b = {sid: i for (r, i), (sid, _) in self.samples.items() if r == rb}
                for (r, i), (sid, _) in sorted(self.samples.items()):
                    if r == ra and sid in index_b:
                        refs = [(ra, i), (rb, index_b[sid])]
                        # Which side each run is shown on is fixed per pair but not always the same run.
                        if hashlib.sha256(f"{ra}{rb}{sid}".encode()).digest()[0] % 2:
                            refs.reverse()
                        out.append(Item(item_key("pair", refs), "pair", sid, tuple(refs)))
        return out

    # ------------------------------------------------------------------------------------------------ images
    def reconstruction_png(self, run_id: str, index: int) -> bytes | None:
        """The saved reconstruction's bytes, or None when (run, index) is not in the catalogue."""
        found = self.samples.get((run_id, index))
        return found[1].read_bytes() if found else None

    def original_png(self, run_id: str, index: int) -> bytes | None:
        """The original of reconstruction (run, index) at the size it was scored at, as PNG; None when unknown."""
        if (run_id, index) not in self.samples:
            return None
        if (run_id, index) not in self._originals:
            self._originals[(run_id, index)] = _original(self.specs[run_id], self.samples[(run_id, index)][0])
        return self._originals[(run_id, index)]

    def describe(self, ref: tuple[str, int]) -> dict[str, Any]:
        spec = self.specs[ref[0]]
        return {"run_id": ref[0], "sample_index": ref[1], "attack": spec["attack"], "defense": spec["defense"],
                "dataset": spec["dataset"]}


def _select(done: dict[str, Any], run_ids: Sequence[str] | None) -> list[str]:
    """Run ids (or unique prefixes of them) among the finished runs; all finished runs when none are given."""
    if not run_ids:
        if not done:
            raise BenchError("the results store has no finished run to annotate; run `bench run` first")
        return list(done)
    out = []
    for want in run_ids:
        hits = [rid for rid in done if rid == want] or [rid for rid in done if rid.startswith(want)]
        if len(hits) != 1:
            known = ", ".join(list(done)[:8]) or "none"
            raise BenchError(f"--runs {want}: {'no' if not hits else 'more than one'} finished run matches "
                             f"(finished runs: {known})")
        if hits[0] not in out:
            out.append(hits[0])
    return out


def _original(spec: dict[str, Any], sample_id: str) -> bytes:
    from PIL import Image

    from bench import registry
    from bench.images import resize, to_uint8

    root = Path(spec["data_root"]) if spec.get("data_root") else None
    try:
        dataset = registry.datasets.get(spec["dataset"]).obj(root=root)
        loaded = dataset.load([sample_id], int(spec["extract_size"]))
    except Exception as exc:  # a moved data folder: the page shows the error instead of the image
        raise BenchError(f"original {spec['dataset']}:{sample_id} cannot be loaded: {exc}") from None
    if len(loaded) != 1:
        raise BenchError(f"original {spec['dataset']}:{sample_id} is not readable")
    arr = to_uint8(resize(loaded.images, int(spec["image_size"])))[0]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()
