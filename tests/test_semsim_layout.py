"""The SemSim release layout is parsed by one rule: `bench annotate import` and `bench semsim train` read the same
files with the same labels, and reject the same folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.annotations import semsim_sets as sets
from bench.annotations.semsim_layout import parse_layout
from bench.annotations.transfer import import_semsim_layout
from bench.errors import BenchError
from bench.store import Store


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def _release(root: Path) -> Path:
    """Two ids with originals (one kept in its -<id>/ folder), one id without, others/, and things to ignore."""
    _png(root / "a" / "a_ori.png", 10)
    _png(root / "a" / "a_rec2.png", 11)
    _png(root / "a" / "a_rec1.png", 12)
    _png(root / "-a" / "a_bad.png", 13)
    _png(root / "b" / "b_rec.png", 20)
    _png(root / "-b" / "b_ori.png", 21)  # the original of b, kept beside its unrecognisable reconstructions
    _png(root / "-b" / "b_bad.png", 22)
    _png(root / "-c" / "c_bad.png", 30)  # no original: left out by both readers
    _png(root / "others" / "x.png", 40)
    _png(root / ".hidden" / "h_ori.png", 50)
    _png(root / "a" / ".h.png", 51)
    (root / "a" / "notes.txt").write_text("not an image")
    _png(root / "top.png", 52)
    return root


def test_parse_layout_rule(tmp_path: Path) -> None:
    layout = parse_layout(_release(tmp_path / "rel"))
    rel = lambda ps: [p.relative_to(layout.root).as_posix() for p in ps]  # noqa: E731
    assert [i.ident for i in layout.ids] == ["a", "b", "c"]
    a, b, c = layout.ids
    assert (rel([a.original]), rel(a.recognisable), rel(a.unrecognisable)) == (
        ["a/a_ori.png"], ["a/a_rec1.png", "a/a_rec2.png"], ["-a/a_bad.png"])
    assert (rel([b.original]), rel(b.recognisable), rel(b.unrecognisable)) == (
        ["-b/b_ori.png"], ["b/b_rec.png"], ["-b/b_bad.png"])
    assert c.original is None and layout.without_original == ["c"]
    assert rel(layout.others) == ["others/x.png"]
    assert (layout.id_folders, layout.negative_folders, layout.has_others) == (2, 3, True)


def test_import_and_training_read_the_same_files_with_the_same_labels(tmp_path: Path) -> None:
    root = _release(tmp_path / "rel")
    with Store(tmp_path / "res" / "bench.sqlite") as store:
        import_semsim_layout(store, root)
        imported = {(a["item"], a["label"], a["original"]) for a in store.annotations()}
    assert imported == {("a/a_rec1.png", 1.0, "a/a_ori.png"), ("a/a_rec2.png", 1.0, "a/a_ori.png"),
                        ("-a/a_bad.png", 0.0, "a/a_ori.png"), ("b/b_rec.png", 1.0, "-b/b_ori.png"),
                        ("-b/b_bad.png", 0.0, "-b/b_ori.png")}
    data = sets.load_folder(root, 8)
    names = data.names
    trained = {(names[i], 1.0, names[g.anchor]) for g in data.groups for i in g.positives}
    trained |= {(names[i], 0.0, names[g.anchor]) for g in data.groups for i in g.negatives}
    assert trained == imported
    assert [names[i] for i in data.extra] == ["others/x.png"]


@pytest.mark.parametrize("bad", ["--a", "-"])
def test_both_readers_reject_a_folder_outside_the_rule(tmp_path: Path, bad: str) -> None:
    root = _release(tmp_path / "rel")
    _png(root / bad / "a_other.png", 60)  # before: the importer dropped it silently, training read it as id "-a"
    with pytest.raises(BenchError, match=f"{bad}: not a folder of the SemSim layout"):
        sets.load_folder(root, 8)
    with Store(tmp_path / "res" / "bench.sqlite") as store, \
            pytest.raises(BenchError, match=f"{bad}: not a folder of the SemSim layout"):
        import_semsim_layout(store, root)


def test_two_originals_are_named(tmp_path: Path) -> None:
    root = _release(tmp_path / "rel")
    _png(root / "-a" / "a2_ori.png", 70)
    with Store(tmp_path / "res" / "bench.sqlite") as store:
        for read in (lambda: sets.load_folder(root, 8), lambda: import_semsim_layout(store, root)):
            with pytest.raises(BenchError, match=r"id 'a' has 2 originals \(\*_ori files: a/a_ori.png, -a/a2_ori"):
                read()
