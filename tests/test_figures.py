"""Figures at print size: the full built-in grid (13 attacks x 10 defenses, synthesized in a store) gives figures
at most 7 in wide, a colour per attack, no text that overprints other text and titles inside the figure."""

from __future__ import annotations

import itertools
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex, to_rgb
from matplotlib.text import Text
from PIL import Image

from bench.report.figures import attack_bars_plot, leakage_utility_plot, write_figures
from bench.report.palette import PALETTE, colour_map
from bench.report.tables import load_board
from bench.run.spec import RunSpec
from bench.store import Store

ATTACKS = ("cfgan", "sli", "sli-b", "sli-r", "sli-l", "ivr", "inv", "nearest-neighbour", "face-cnn",
           "attribute-inference", "feature-decoder", "feature-gan", "mean-image")
DEFENSES = (("none", {}), ("drop-coordinates", {}), ("drop-descriptors", {}), ("subsample", {"keep": 0.25}),
            ("descriptor-noise", {"sigma": 8.0}), ("descriptor-quantize", {"levels": 4}),
            ("pe-miu", {"block_size": 16, "moved": -1}), ("shufflebits", {"key_bits": 256}),
            ("gaussian-noise", {"sigma": 0.05}), ("quantize", {"bits": 4}))
UTILITY = {"none": {}, "drop-coordinates": {"match-rate": 0.1}, "drop-descriptors": {"match-rate": 0.0}}


SIFT_ATTACKS = ATTACKS[:8]
SIFT_DEFENSES = {"none", "drop-coordinates", "drop-descriptors", "subsample", "descriptor-noise", "descriptor-quantize"}


def _spec(attack: str, defense: str, params: dict, seed: int, extractor: str = "sift") -> RunSpec:
    return RunSpec(attack=attack, defense=defense, dataset="utkface", data_root=None, profile="smoke", seed=seed,
                   n_train=20, n_test=8, extract_size=64, image_size=32, extractor={"name": extractor, "version": "1"},
                   defense_params={"name": defense, "version": "1", "params": params},
                   attack_config={"name": attack, "version": "1", "params": {}})


def _pairs(realistic: bool) -> list[tuple[int, str, int, str, dict, str]]:
    """(attack index, attack, defense index, defense, params, extractor): every pair, or only those a grid runs
    (SIFT attacks on SIFT defenses, embedding attacks on embedding defenses, mean-image on both extractors)."""
    out = []
    for (a, attack), (d, (defense, params)) in itertools.product(enumerate(ATTACKS), enumerate(DEFENSES)):
        if not realistic:
            out.append((a, attack, d, defense, params, "sift"))
            continue
        for extractor in ("sift", "dlib-face"):
            sift_attack = attack in SIFT_ATTACKS or attack == "mean-image"
            embedding_attack = attack not in SIFT_ATTACKS
            fits = (sift_attack and extractor == "sift" and defense in SIFT_DEFENSES) or (
                embedding_attack and extractor == "dlib-face" and (defense not in SIFT_DEFENSES or defense == "none"))
            if fits:
                out.append((a, attack, d, defense, params, extractor))
    return out


def _grid_board(path: Path, realistic: bool):
    """A store with 1 or 2 seeds per pair of `_pairs` and random SSIM and utility values; its board."""
    rng = np.random.default_rng(16)
    with Store(path) as s:
        for a, attack, d, defense, params, extractor in _pairs(realistic):
            for seed in range(1 + (a + d) % 2):
                spec = _spec(attack, defense, params, seed, extractor)
                s.start_run(spec.run_id, spec.to_dict())
                value = 0.95 if realistic and attack == "face-cnn" else float(rng.uniform(0.05, 0.9))
                s.set_set_metric(spec.run_id, "ssim", value, 8, "c", higher_is_better=True, value_range=(0.0, 1.0))
                utility = UTILITY.get(defense, {"match-rate" if d < 6 else "tmr@fmr=1%": float(rng.uniform(0.2, 0.99))})
                if realistic and defense in ("pe-miu", "shufflebits", "quantize"):
                    utility = {}  # no identities (a demo set): long legend entries of horizontal lines
                for name, value in utility.items():
                    s.set_utility(spec.run_id, name, value)
                s.finish_run(spec.run_id, {})
        return load_board(s, "utkface")


@pytest.fixture(scope="module")
def full_grid(tmp_path_factory: pytest.TempPathFactory):
    """Every built-in attack against every built-in defense (the worst case: no pair skipped), 1 or 2 seeds."""
    return _grid_board(tmp_path_factory.mktemp("grid") / "bench.sqlite", realistic=False)


@pytest.fixture(scope="module")
def real_grid(tmp_path_factory: pytest.TempPathFactory):
    """The pairs a full built-in grid runs, each facet with its own rows and long labels (`[extractor=...]`)."""
    return _grid_board(tmp_path_factory.mktemp("real") / "bench.sqlite", realistic=True)


def _texts(fig) -> tuple[list[tuple[str, object]], object]:
    """(text, window bbox) of every non-empty text the renderer really draws (tick labels outside the view limits
    exist as artists but are not drawn), and the figure's bbox."""
    drawn = []
    original = Text.draw

    def record(self, renderer):  # noqa: ANN001
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)
        return original(self, renderer)

    canvas = FigureCanvasAgg(fig)
    with mock.patch.object(Text, "draw", record):
        canvas.draw()
    renderer = canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in drawn], fig.bbox


def _assert_legible(fig, at_least: int = 10) -> None:
    texts, frame = _texts(fig)
    assert len(texts) >= at_least
    for text, box in texts:  # nothing cut at the edge (titles included)
        assert (box.x0 >= frame.x0 - 0.5 and box.y0 >= frame.y0 - 0.5 and box.x1 <= frame.x1 + 0.5
                and box.y1 <= frame.y1 + 0.5), f"{text!r} reaches outside the figure: {box} vs {frame}"
    for (t1, b1), (t2, b2) in itertools.combinations(texts, 2):
        w = min(b1.x1, b2.x1) - max(b1.x0, b2.x0)
        h = min(b1.y1, b2.y1) - max(b1.y0, b2.y0)
        assert not (w > 0.5 and h > 0.5), f"{t1!r} overprints {t2!r}"


def test_palette_has_13_colours_apart_on_paper() -> None:
    def lab(hex_colour: str) -> np.ndarray:  # sRGB (D65) -> CIELAB, written out here rather than imported
        c = np.array(to_rgb(hex_colour))
        c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ c
        xyz /= np.array([0.95047, 1.0, 1.08883])
        f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
        return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])

    assert len(set(PALETTE)) >= 13
    labs = [lab(c) for c in PALETTE]
    closest = min(np.linalg.norm(p - q) for p, q in itertools.combinations(labs, 2))
    assert closest >= 25  # CIE76 ΔE: clearly different colours side by side
    assert all(p[0] <= 90 for p in labs)  # none too pale for white paper
    assert len(set(colour_map(ATTACKS).values())) == 13


def test_past_16_names_colour_and_hatch_still_tell_them_apart() -> None:
    from bench.report.palette import hatch_map

    names = [f"attack-{k:02d}" for k in range(20)]
    colours, hatches = colour_map(names), hatch_map(names)
    assert len({colours[n] for n in names[:16]}) == 16 and not any(hatches[n] for n in names[:16])
    assert len({(colours[n], hatches[n]) for n in names}) == 20
    assert colour_map(["b", "a", "b"]) == {"b": PALETTE[0], "a": PALETTE[1]}


def test_attack_bars_fit_a_page_with_a_colour_per_attack(full_grid, tmp_path: Path) -> None:
    fig = attack_bars_plot(full_grid, "ssim")
    width, height = fig.get_size_inches()
    assert width <= 7.0 and height <= 9.0
    _assert_legible(fig)
    colour_of: dict[str, set[str]] = {}
    facets = [ax for ax in fig.axes if ax.patches]
    assert len(facets) == len(DEFENSES)
    for ax in facets:
        ticks = ax.get_yticks()  # shared between facets: only the first column draws them, all hold them
        labels = dict(zip(ticks, ax.yaxis.get_major_formatter().format_ticks(ticks)))
        assert sorted(labels.values()) == sorted(ATTACKS)
        for patch in ax.patches:
            label = labels[patch.get_y() + patch.get_height() / 2]
            colour_of.setdefault(label, set()).add(to_hex(patch.get_facecolor()))
    assert all(len(c) == 1 for c in colour_of.values())  # one attack, one colour in every facet
    assert len({c for cs in colour_of.values() for c in cs}) == len(ATTACKS)
    paths = write_figures(full_grid, "ssim", tmp_path)
    png = next(p for p in paths if p.name == "utkface-attacks.png")
    with Image.open(png) as im:  # 8,297 px wide before; print width at 300 dpi is 2,100 px
        assert im.width <= 7 * 300 and im.height <= 9 * 300


def test_bars_of_a_real_grid_fit_and_name_every_row(real_grid) -> None:
    fig = attack_bars_plot(real_grid, "ssim")
    assert fig.get_size_inches()[0] <= 7.0 and fig.get_size_inches()[1] <= 9.0
    _assert_legible(fig)
    facets = [ax for ax in fig.axes if ax.patches]
    assert len(facets) == len(DEFENSES)
    none = next(ax for ax in facets if ax.get_title() == "none")
    names = {t.get_text().replace("\n", " ") for t in none.get_yticklabels()}
    assert "mean-image [sift]" in names and "mean-image [dlib-face]" in names
    shuffle = next(ax for ax in facets if ax.get_title().startswith("shufflebits"))
    assert {t.get_text() for t in shuffle.get_yticklabels()} == {"face-cnn", "attribute-inference", "feature-decoder",
                                                                  "feature-gan", "mean-image"}
    legible = leakage_utility_plot(real_grid, "ssim")
    _assert_legible(legible)


def test_leakage_utility_has_a_legend_not_overprinted_labels(full_grid) -> None:
    fig = leakage_utility_plot(full_grid, "ssim")
    assert fig.get_size_inches()[0] <= 7.0 and fig.get_size_inches()[1] <= 9.0
    _assert_legible(fig)
    legend = fig.legends[0]
    entries = [t.get_text().replace("\n", " ") for t in legend.get_texts()]
    assert len(entries) == len(DEFENSES)
    assert any(e.startswith("none — best attack:") and "horizontal line" in e for e in entries)
    colours = [to_hex(h.get_color()) for h in legend.legend_handles]
    assert len(set(colours)) == len(DEFENSES)


def test_the_legibility_check_sees_overprint_and_a_cut_title() -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2), layout="constrained")
    ax = fig.subplots()
    ax.set_axis_off()
    ax.text(0.5, 0.5, "first label")
    ax.text(0.52, 0.5, "second label")
    with pytest.raises(AssertionError, match="overprints"):
        _assert_legible(fig, 2)
    cut = Figure(figsize=(3, 2), layout="constrained")
    ax = cut.subplots()
    ax.set_axis_off()
    ax.set_title("a title far too long for a figure three inches wide, cut where it says demo set")
    with pytest.raises(AssertionError, match="outside the figure"):
        _assert_legible(cut, 1)


# ------------------------------------------------------------------------------------------------ a run's grid.png
DEMO_TITLE = "face-cnn vs pe-miu on synthetic-faces (demo set: synthetic face-like images, not real faces)"


def _columns_of(path: Path, n: int, size: int = 128, pad: int = 4) -> list[np.ndarray]:
    """The three columns (original, released, reconstruction) of a grid.png as n×size×size×3 arrays."""
    arr = np.asarray(Image.open(path).convert("RGB"))
    head = arr.shape[0] - n * (size + pad) - pad
    rows = [arr[head + r * (size + pad): head + r * (size + pad) + size] for r in range(n)]
    return [np.stack([row[:, pad + c * (size + pad): pad + c * (size + pad) + size] for row in rows])
            for c in range(3)]


def _faces(n: int, seed: int) -> "torch.Tensor":
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 3, 64, 64), generator=g)


def test_grid_title_is_wrapped_whole(tmp_path: Path) -> None:
    from bench.features.embeddings import EmbeddingSet
    from bench.features.pictures import font
    from bench.run.comparison_grid import TITLE_PX, comparison_grid, wrap_title

    width = 3 * 128 + 4 * 4
    lines = wrap_title(DEMO_TITLE, width - 8)
    assert len(lines) >= 2 and " ".join(lines) == DEMO_TITLE  # every word drawn, "demo set" included
    assert all(font(TITLE_PX).getlength(line) <= width - 8 for line in lines)
    assert wrap_title("x" * 300, 100) and "".join(wrap_title("x" * 300, 100)) == "x" * 300
    faces = _faces(2, 0)
    comparison_grid(faces, faces, EmbeddingSet(np.ones((2, 8), np.float32)), tmp_path / "g.png", DEMO_TITLE, n=2)
    arr = np.asarray(Image.open(tmp_path / "g.png").convert("L"))
    head = arr.shape[0] - 2 * (128 + 4) - 4
    ink_rows = np.nonzero((arr[:head] < 128).any(axis=1))[0]
    bands = 1 + int((np.diff(ink_rows) > 1).sum())  # separate lines of text in the header
    assert bands == len(lines) + 1  # the title's lines, then the column labels
    assert (arr[:head, -3:] > 250).all()  # no text runs into the right edge


def test_released_column_shows_the_vector_never_the_face(tmp_path: Path) -> None:
    from bench.features.embeddings import BitPatternSet, EmbeddingSet
    from bench.run.comparison_grid import comparison_grid

    vectors = np.random.default_rng(3).standard_normal((3, 128)).astype(np.float32)
    for released in (EmbeddingSet(vectors), BitPatternSet(vectors.view(np.uint32))):
        columns = {}
        for seed in (0, 1):  # the same released features beside two different private images
            faces = _faces(3, seed)
            comparison_grid(faces, faces * 0.5, released, tmp_path / f"{seed}.png", "t", n=3)
            columns[seed] = _columns_of(tmp_path / f"{seed}.png", 3)
        original, shown, _ = columns[0]
        assert np.abs(shown.astype(int) - original.astype(int)).mean() > 20
        assert not np.array_equal(columns[0][0], columns[1][0])  # the originals differ ...
        assert np.array_equal(columns[0][1], columns[1][1])  # ... and the released column does not
        for i in range(3):
            assert np.array_equal(shown[i], released.picture(i, 128))
    changed = vectors.copy()
    changed[0, :5] *= -1
    assert not np.array_equal(EmbeddingSet(changed).picture(0, 128), EmbeddingSet(vectors).picture(0, 128))


def test_released_column_of_sift_draws_keypoints_not_the_face(tmp_path: Path) -> None:
    from bench.features.sift import SiftSet
    from bench.run.comparison_grid import comparison_grid

    kp = np.array([[10, 20, 6, 30, 0.1, 0], [40, 44, 12, 200, 0.1, 0]], np.float32)
    released = SiftSet(kp, np.zeros((2, 128), np.uint8), np.array([0, 1, 2]), meta={"image_size": 64})

    faces = _faces(2, 5)
    comparison_grid(faces, faces, released, tmp_path / "s.png", "t", n=2)
    original, shown, _ = _columns_of(tmp_path / "s.png", 2)
    assert (shown > 245).all(axis=-1).mean() > 0.8  # mostly white paper: keypoints, not a photograph
    assert np.array_equal(shown[0], released.picture(0, 128)) and not np.array_equal(shown[0], shown[1])


# ------------------------------------------------------------------------------------------------ from a CSV
def test_figures_of_the_committed_sift_table_fit_and_tell_rows_apart(tmp_path: Path) -> None:
    from bench.report.csv_board import board_from_csv
    from bench.report.publish import publish_from_csv

    csv_path = Path(__file__).resolve().parents[1] / "leaderboards" / "sift-utkface.csv"
    board = board_from_csv(csv_path, "utkface")
    fig = attack_bars_plot(board, "ssim")
    assert fig.get_size_inches()[0] <= 7.0 and fig.get_size_inches()[1] <= 9.0
    _assert_legible(fig)
    for ax in (ax for ax in fig.axes if ax.patches):  # two seed rows of one attack never share a label
        names = [t.get_text() for t in ax.get_yticklabels()]
        assert len(names) == len(set(names)) == len(ax.patches)
    _assert_legible(leakage_utility_plot(board, "ssim"))
    paths = publish_from_csv(csv_path, tmp_path, ["md"], "utkface", figures=True)
    assert sorted(p.name for p in paths) == ["sift-utkface.md", "utkface-attacks.pdf", "utkface-attacks.png",
                                             "utkface-leakage-utility.pdf", "utkface-leakage-utility.png"]
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="metric lpipz"):
        publish_from_csv(csv_path, tmp_path / "none", ["md"], figures=True, figure_metric="lpipz")
    assert not (tmp_path / "none").exists() or not any((tmp_path / "none").iterdir())


def test_a_missing_utility_std_is_said_not_drawn_as_zero(full_grid) -> None:
    from dataclasses import replace

    assert "no std of utility" not in leakage_utility_plot(full_grid, "ssim")._suptitle.get_text()
    frame = full_grid.frame.copy()
    for u in full_grid.utilities:
        frame[f"utility:{u}_std"] = float("nan")  # as a CSV board reads it
    title = leakage_utility_plot(replace(full_grid, frame=frame), "ssim")._suptitle.get_text().replace("\n", " ")
    assert "no std of utility recorded for points of several seeds" in title
