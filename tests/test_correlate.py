"""`bench correlate` end to end on a store the test builds (runs, metric values with their direction, constructed
annotations): every number in the table is checked against scipy on the arrays the test computes itself."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from bench.cli import main
from bench.report.correlation import UNDEFINED
from bench.store import Store

SCIPY = {"spearman": stats.spearmanr, "pearson": stats.pearsonr, "kendall": stats.kendalltau}
N_SAMPLES = 4
ANNOTATORS = ("constructed-a", "constructed-b")


def _build(results: Path, annotators: tuple[str, ...] = ANNOTATORS) -> dict:
    """Six configurations (the first with two seeds), four reconstructions per run, known values and answers."""
    rng = np.random.default_rng(5)
    truth: dict = {"config": {}, "sample": {}}
    with Store(results / "bench.sqlite") as st:
        for c in range(6):
            for seed in ((0, 1) if c == 0 else (0,)):
                run_id = f"{c:02d}{seed:02d}" + "ab" * 6
                spec = {"dataset": "synthetic-faces", "attack": f"attack{c}", "defense": "none", "profile": "smoke",
                        "seed": seed}
                st.start_run(run_id, spec, config_id=f"config{c}")
                st.finish_run(run_id, {})
                quality = c + rng.normal(0, 0.5, N_SAMPLES)
                psnr, mse = 10 + 2 * quality, np.exp(-quality)
                st.add_sample_metrics(run_id, [(i, f"s{i}", m, v[i]) for i in range(N_SAMPLES)
                                               for m, v in (("psnr", psnr), ("mse", mse))])
                st.set_set_metric(run_id, "psnr", psnr.mean(), N_SAMPLES, "standard", higher_is_better=True)
                st.set_set_metric(run_id, "mse", mse.mean(), N_SAMPLES, "standard", higher_is_better=False)
                st.set_set_metric(run_id, "flat", 0.5, N_SAMPLES, "standard", higher_is_better=True)
                st.set_set_metric(run_id, "nodir", c, N_SAMPLES, "standard", higher_is_better=None)
                truth["config"].setdefault(f"config{c}", {"psnr": [], "mse": [], "human": []})
                for i in range(N_SAMPLES):
                    labels = {}
                    for k, ann in enumerate(annotators):
                        labels[ann] = float(quality[i] + rng.normal(0, 1.5) > 2.5)
                        st.set_annotation(run_id, i, f"s{i}", "recognisable", labels[ann], ann)
                    h = np.mean(list(labels.values()))
                    truth["sample"][(run_id, i)] = {"psnr": psnr[i], "mse": mse[i], "human": h, "labels": labels}
                    truth["config"][f"config{c}"]["human"].append(h)
                truth["config"][f"config{c}"]["psnr"].append(psnr.mean())
                truth["config"][f"config{c}"]["mse"].append(mse.mean())
    return truth


def _table(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["metric"], r["method"]): r for r in csv.DictReader(path.open())}


@pytest.mark.parametrize("level", ["config", "sample"])
def test_correlate_matches_scipy_with_orientation(tmp_path: Path, level: str) -> None:
    results = tmp_path / "results"
    truth = _build(results)
    out = CliRunner().invoke(main, ["correlate", "--results", str(results), "--level", level, "--resamples", "200"])
    assert out.exit_code == 0, out.output
    assert "constructed annotations, not human judgements" in out.output
    table = _table(results / "correlation" / f"correlation-{level}.csv")
    if level == "config":
        cfg = [truth["config"][c] for c in sorted(truth["config"])]
        human = np.array([np.mean(c["human"]) for c in cfg])
        x = {"psnr": np.array([np.mean(c["psnr"]) for c in cfg]), "mse": -np.array([np.mean(c["mse"]) for c in cfg])}
        assert {m for m, _ in table} == {"psnr", "mse", "flat", "nodir"}
    else:
        keys = sorted(truth["sample"])
        human = np.array([truth["sample"][k]["human"] for k in keys])
        x = {"psnr": np.array([truth["sample"][k]["psnr"] for k in keys]),
             "mse": -np.array([truth["sample"][k]["mse"] for k in keys])}
        assert {m for m, _ in table} == {"psnr", "mse"}  # set-level-only metrics have no per-sample values
    for metric in ("psnr", "mse"):
        for method, fn in SCIPY.items():
            row = table[(metric, method)]
            r, p = fn(x[metric], human)
            assert row["status"] == "ok" and int(row["n"]) == len(human)
            assert float(row["r"]) == pytest.approx(float(r), abs=1e-12)
            assert float(row["p"]) == pytest.approx(float(p), rel=1e-9)
            assert float(row["ci_low"]) <= float(row["r"]) <= float(row["ci_high"]) or int(row["ci_dropped"]) > 0
            assert row["annotations"] == "constructed annotations, not human judgements"
    # oriented: mse (lower is better) is negated, so it agrees with humans (positive) like psnr
    assert table[("mse", "spearman")]["orientation"] == "negated (lower is better)"
    assert float(table[("mse", "spearman")]["r"]) > 0 and float(table[("psnr", "spearman")]["r"]) > 0
    if level == "config":
        for method in SCIPY:
            flat, nodir = table[("flat", method)], table[("nodir", method)]
            assert (flat["status"], flat["r"], flat["p"], flat["ci_low"]) == (UNDEFINED,) * 4
            assert "metric values are constant" in flat["note"]
            assert nodir["r"] == UNDEFINED and "direction is not stored" in nodir["note"]
        assert "nan" not in (results / "correlation" / "correlation-config.csv").read_text().lower()
    # agreement beside the correlations, equal to the reference package on the same answers
    krippendorff = pytest.importorskip("krippendorff")
    data = np.array([[truth["sample"][k]["labels"][a] for k in sorted(truth["sample"])] for a in ANNOTATORS])
    alpha = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert float(table[("psnr", "spearman")]["agreement_alpha"]) == pytest.approx(alpha, abs=1e-4)
    assert f"alpha (nominal) = {alpha:.3f}" in out.output
    # outputs: points and one scatter plot per metric with points
    points = list(csv.DictReader((results / "correlation" / f"points-{level}.csv").open()))
    assert len([p for p in points if p["metric"] == "psnr"]) == len(human)
    for metric in ("psnr", "mse"):
        png = results / "correlation" / f"scatter-{level}-{metric}.png"
        assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"


def test_one_annotator_and_metric_selection(tmp_path: Path) -> None:
    results = tmp_path / "results"
    _build(results, annotators=("constructed-solo",))
    out = CliRunner().invoke(main, ["correlate", "--results", str(results), "--metrics", "psnr", "--no-plots",
                                    "--resamples", "100"])
    assert out.exit_code == 0, out.output
    assert "agreement: undefined (one annotator)" in out.output
    table = _table(results / "correlation" / "correlation-config.csv")
    assert {m for m, _ in table} == {"psnr"}
    assert table[("psnr", "pearson")]["agreement_alpha"] == UNDEFINED
    assert table[("psnr", "pearson")]["agreement_note"] == "agreement: undefined (one annotator)"
    assert not list((results / "correlation").glob("*.png"))
    out = CliRunner().invoke(main, ["correlate", "--results", str(results), "--metrics", "lpips", "--no-plots"])
    assert out.exit_code == 0 and "no set-level values of lpips" in out.output


def test_left_out_metrics_are_named_with_the_reason(tmp_path: Path) -> None:
    """Without --metrics, a stored metric that cannot be correlated is named in the output with why: no ok value
    (its status and fix), or at sample level no per-sample values."""
    results = tmp_path / "results"
    _build(results)
    with Store(results / "bench.sqlite") as st:
        for run in st.runs():
            st.set_set_metric(run["run_id"], "lpips", float("nan"), N_SAMPLES, "standard", status="unavailable",
                              detail="bench weights pull lpips-alex", higher_is_better=False)
    out = CliRunner().invoke(main, ["correlate", "--results", str(results), "--no-plots", "--resamples", "100"])
    assert out.exit_code == 0, out.output
    assert "note: left out lpips: no ok value for the annotated runs (unavailable: bench weights pull lpips-alex)" \
        in out.output
    assert "left out psnr" not in out.output and "left out mse" not in out.output
    out = CliRunner().invoke(main, ["correlate", "--results", str(results), "--no-plots", "--resamples", "100",
                                    "--level", "sample"])
    assert out.exit_code == 0, out.output
    for m in ("flat", "nodir"):  # set-level values only
        assert f"note: left out {m}: no per-sample values for the annotated reconstructions" in out.output
    assert "note: left out lpips: no ok value" in out.output


def test_correlate_user_errors(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["correlate", "--results", str(tmp_path / "nowhere")])
    assert out.exit_code == 2 and out.output.startswith("error: no results store")
    Store(tmp_path / "r" / "bench.sqlite").close()
    out = CliRunner().invoke(main, ["correlate", "--results", str(tmp_path / "r")])
    assert out.exit_code == 2 and "no 'recognisable' or pair annotations" in out.output
    assert "Traceback" not in out.output


def test_human_labels_say_human(tmp_path: Path) -> None:
    results = tmp_path / "results"
    _build(results, annotators=("ann-1", "ann-2"))
    out = CliRunner().invoke(main, ["correlate", "--results", str(results), "--no-plots", "--resamples", "100"])
    assert out.exit_code == 0 and "constructed" not in out.output
    table = _table(results / "correlation" / "correlation-config.csv")
    assert {r["annotations"] for r in table.values()} == {"human"}


def test_pair_answers_give_forced_choice_agreement(tmp_path: Path) -> None:
    results = tmp_path / "results"
    truth = _build(results)
    keys = sorted(truth["sample"])
    rng = np.random.default_rng(2)
    expected = {"psnr": [], "mse": []}
    with Store(results / "bench.sqlite") as st:
        for k in range(12):
            a, b = keys[k], keys[-1 - k]  # two reconstructions (different runs); same original not needed here
            for ann in ANNOTATORS:
                choice = "a" if rng.random() < 0.7 else "b"
                st.set_pair_annotation(a, b, f"s{a[1]}", choice, ann)
                want = 1 if choice == "a" else -1
                for metric, sign in (("psnr", 1), ("mse", -1)):
                    d = sign * (truth["sample"][a][metric] - truth["sample"][b][metric])
                    expected[metric].append(0.5 if d == 0 else float(np.sign(d) == want))
    out = CliRunner().invoke(main, ["correlate", "--results", str(results), "--no-plots", "--resamples", "200"])
    assert out.exit_code == 0, out.output
    assert "pairs (two-alternative forced choice): 2 annotator(s)" in out.output
    rows = {r["metric"]: r for r in csv.DictReader((results / "correlation" / "pairs.csv").open())}
    for metric, scores in expected.items():
        row = rows[metric]
        assert int(row["answers"]) == 24 and int(row["pairs"]) == 12
        assert float(row["agreement"]) == pytest.approx(np.mean(scores))
        assert float(row["p"]) == pytest.approx(stats.binomtest(int(sum(scores)), 24, 0.5).pvalue)
        assert row["annotations"] == "constructed annotations, not human judgements"


def test_points_name_the_victim_of_each_configuration() -> None:
    """SemSim's points are attack x defense x model: the extractor (the gradient victim) and its parameters are named,
    so two configurations that differ only in the victim can be told apart in points-<level>.csv."""
    from bench.report.correlation import extractor_label

    assert extractor_label({"extractor": {"name": "fedsgd-lenet-zhu", "version": "1"}}) == "fedsgd-lenet-zhu"
    assert extractor_label({"extractor": {"name": "fedsgd", "version": "1", "victim": "convnet", "width": 64}}) \
        == "fedsgd(victim=convnet,width=64)"
    trained = {"name": "fedsgd", "version": "1", "trained": True, "victim": "resnet20-4",
               "training": {"steps": 30, "seed": 0}}
    assert extractor_label({"extractor": trained}) == "fedsgd(trained=true,victim=resnet20-4)"
    assert extractor_label({}) == ""
