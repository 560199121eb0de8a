"""End-to-end tests of every `bench` command at the smoke profile, and its user-error behaviour."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import main

SMOKE = ["--profile", "smoke", "--quiet"]


def invoke(*args: str) -> "click.testing.Result":  # noqa: F821
    return CliRunner().invoke(main, list(args))


def test_list_shows_every_kind_with_descriptions() -> None:
    out = invoke("list")
    assert out.exit_code == 0, out.output
    for name in ("cfgan", "mean-image", "none", "psnr", "ssim", "ssim-sift-compat", "synthetic-faces", "utkface",
                 "sift"):
        assert name in out.output
    out = invoke("list", "metrics")
    assert "higher is better" in out.output and "lower is better" in out.output
    assert "cfgan" not in out.output


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One real smoke run of cfgan and one of the floor, shared by the tests below."""
    results = tmp_path_factory.mktemp("results")
    out = invoke("run", "--attack", "cfgan", "--defense", "none", "--results", str(results), *SMOKE)
    assert out.exit_code == 0, out.output
    floor = invoke("run", "--attack", "mean-image", "--results", str(results), *SMOKE)
    assert floor.exit_code == 0, floor.output
    return results, out.output


def test_run_writes_every_output(smoke_results: tuple[Path, str]) -> None:
    results, output = smoke_results
    assert "demo set" in output and "ssim" in output and "leaderboard:" in output
    (run_dir,) = [p for p in (results / "runs").iterdir()
                  if p.is_dir() and json.loads((p / "run.json").read_text())["spec"]["attack"] == "cfgan"]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["run_id"] == run_dir.name
    # The demo set is generated (no native size), so the profile's sizes apply.
    assert record["resolutions"] == {"extract": 64, "reconstruct_and_score": 32, "native": None, "rule": "profile"}
    assert record["versions"]["torch"] and "threat_model" in record and record["timings_s"]["train"] > 0
    assert any("perceptual" in n for n in record["notes"])  # what the cpu/smoke profiles disable is said
    assert record["metric_conventions"]["ssim"]
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert len(rows) == 8 and {"psnr", "ssim", "mse", "ssim-sift-compat"} <= set(rows[0])
    assert len(list((run_dir / "reconstructions").glob("*.png"))) == 8
    assert (run_dir / "grid.png").stat().st_size > 1000
    board = list(csv.DictReader((results / "leaderboards" / "synthetic-faces.csv").open()))
    assert {(r["attack"], r["defense"], r["profile"]) for r in board} == {("cfgan", "none", "smoke"),
                                                                          ("mean-image", "none", "smoke")}
    assert all(r["n_test"] == "8" and r["run_ids"] and r["seeds"] == "1" for r in board)


def test_leaderboard_regenerates_from_the_store(smoke_results: tuple[Path, str], tmp_path: Path) -> None:
    results, _ = smoke_results
    out = invoke("leaderboard", "--results", str(results), "--out", str(tmp_path))
    assert out.exit_code == 0, out.output
    regenerated = (tmp_path / "synthetic-faces.csv").read_text()
    assert regenerated == (results / "leaderboards" / "synthetic-faces.csv").read_text()
    out = invoke("leaderboard", "--results", str(tmp_path / "nothing"))
    assert out.exit_code != 0 and "no results store" in out.output


def test_leaderboard_writes_every_format_and_the_figures(smoke_results: tuple[Path, str], tmp_path: Path) -> None:
    from bench.store import Store

    results, _ = smoke_results
    out = invoke("leaderboard", "--results", str(results), "--out", str(tmp_path), "--format", "csv,md",
                 "--format", "tex,html", "--figures")
    assert out.exit_code == 0, out.output
    names = {Path(line).name for line in out.output.split()}
    assert names == {f"synthetic-faces{s}" for s in (".csv", ".md", ".tex", ".html", "-leakage-utility.png",
                                                     "-leakage-utility.pdf", "-attacks.png", "-attacks.pdf")}
    with Store(results / "bench.sqlite") as store:
        ssim = {r["attack"]: store.set_metrics(r["run_id"])["ssim"]["value"] for r in store.runs(status="done")}
    md = (tmp_path / "synthetic-faces.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| attack"))
    col = [c.strip() for c in header.strip("|").split("|")].index("ssim ↑")
    for line in md.splitlines():
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        if cells[0] in ssim:
            assert float(cells[col]) == pytest.approx(ssim.pop(cells[0]), abs=5e-5)
    assert not ssim  # both attacks were rows
    tex = (tmp_path / "synthetic-faces.tex").read_text()
    assert r"\toprule" in tex and r"ssim $\uparrow$" in tex
    page = (tmp_path / "synthetic-faces.html").read_text()
    assert page.count("data:image/png;base64,") == 2  # one grid per run, embedded
    assert (tmp_path / "synthetic-faces-attacks.pdf").read_bytes().startswith(b"%PDF-")
    only = invoke("leaderboard", "--results", str(results), "--out", str(tmp_path / "f"), "--defense", "none",
                  "--metrics", "ssim,psnr")
    assert only.exit_code == 0, only.output
    rows = list(csv.DictReader((tmp_path / "f" / "synthetic-faces.csv").open()))
    assert [c for c in rows[0] if c in ("ssim", "psnr", "mse", "ssim-sift-compat")] == ["ssim", "psnr"]
    assert list(rows[0])[-5:] == ["source", "config_id", "run_ids", "profile_note", "dataset_note"]


@pytest.mark.parametrize("args, message", [
    (("--format", "pdf"), "unknown --format pdf"),
    (("--defense", "nope"), "defense nope"),
    (("--metrics", "ssimm"), "metric ssimm"),
    (("--dataset", "utkface"), "no finished runs on dataset utkface"),
    (("--figures", "--figure-metric", "nope"), "metric nope"),
])
def test_leaderboard_user_errors(smoke_results: tuple[Path, str], tmp_path: Path, args: tuple[str, ...],
                                 message: str) -> None:
    results, _ = smoke_results
    out = invoke("leaderboard", "--results", str(results), "--out", str(tmp_path), *args)
    assert out.exit_code == 2 and message in out.output and "Traceback" not in out.output
    assert len(out.output.strip().splitlines()) == 1
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # an error is found before anything is written


def test_leaderboard_html_shows_the_real_grids(smoke_results: tuple[Path, str], tmp_path: Path, page) -> None:
    results, _ = smoke_results
    assert invoke("leaderboard", "--results", str(results), "--out", str(tmp_path), "--format", "html").exit_code == 0
    page.goto((tmp_path / "synthetic-faces.html").resolve().as_uri())
    widths = page.locator("table.board img").evaluate_all("imgs => imgs.map(i => i.complete && i.naturalWidth)")
    assert len(widths) == 2 and all(w > 100 for w in widths)


def test_describe_prints_figures_beside_the_paper() -> None:
    out = invoke("describe", "--attack", "cfgan", "--profile", "smoke")
    assert out.exit_code == 0, out.output
    assert "param" in out.output.lower() and "flops" in out.output.lower()


@pytest.mark.parametrize("args, message", [
    (("run", "--attack", "cfgann"), "did you mean cfgan"),
    (("run", "--attack", "cfgan", "--defense", "nonee"), "did you mean none"),
    (("run", "--attack", "cfgan", "--dataset", "utkfac"), "did you mean utkface"),
    (("run", "--attack", "cfgan", "--dataset", "utkface", "--profile", "smoke"), "needs --data-root"),
    (("run", "--attack", "cfgan", "--dataset", "folder", "--data-root", "/nonexistent/x", "--profile", "smoke"),
     "/nonexistent/x"),
    (("run", "--attack", "cfgan", "--profile", "smoke", "--n-test", "0"), "--n-test"),
    (("run", "--attack", "cfgan", "--profile", "smoke", "--metrics", "ssimm"), "did you mean ssim"),
    (("describe", "--attack", "nope"), "unknown attack"),
])
def test_user_errors_are_one_line_without_traceback(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    out = invoke(*args, "--results", str(tmp_path)) if args[0] == "run" else invoke(*args)
    assert out.exit_code != 0
    assert message in out.output
    assert "Traceback" not in out.output
    assert len(out.output.strip().splitlines()) == 1


def test_console_script_is_installed_and_reports_errors(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("bench")
    assert exe.exists(), "the `bench` console script is not installed beside this python"
    proc = subprocess.run([str(exe), "run", "--attack", "cfgann", "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr  # one line
    assert proc.stderr.startswith("error: unknown attack 'cfgann'; did you mean cfgan"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_plugin_check_passes_for_builtins() -> None:
    for name in ("mean-image", "none", "psnr"):
        out = invoke("plugin", "check", name)
        assert out.exit_code == 0, out.output
        assert "all contract checks passed" in out.output


def test_weights_commands(bench_home: Path, tmp_path: Path) -> None:
    out = invoke("weights", "list")
    assert out.exit_code == 0, out.output
    assert "vgg19" in out.output and "missing" in out.output
    bogus = tmp_path / "vgg19-dcbb9e9d.pth"
    bogus.write_bytes(b"not the real file")
    out = invoke("weights", "import", str(bogus))
    assert out.exit_code != 0 and "Traceback" not in out.output


def test_paper_profile_refuses_without_vgg19_weights(bench_home: Path, tmp_path: Path) -> None:
    out = invoke("run", "--attack", "cfgan", "--profile", "paper", "--results", str(tmp_path))
    assert out.exit_code != 0 and "Traceback" not in out.output
    assert "bench weights import" in out.output and "vgg19" in out.output


def test_cross_dataset_run_and_unreadable_files(shared_data: Path, tmp_path: Path) -> None:
    """Train on the synthetic set, attack real CelebA-HQ faces; a corrupt file is skipped and reported by name."""
    private = tmp_path / "private"
    private.mkdir()
    for src in sorted((shared_data / "faces" / "celebahq_256").glob("*.png"))[:6]:
        (private / src.name).write_bytes(src.read_bytes())
    (private / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    out = invoke("run", "--attack", "mean-image", "--dataset", "folder", "--data-root", str(private),
                 "--aux-dataset", "synthetic-faces", "--n-train", "8", "--n-test", "7", "--results",
                 str(tmp_path / "r"), *SMOKE)
    assert out.exit_code == 0, out.output
    assert "warning: 1 unreadable image file(s) skipped: broken.jpg" in out.output
    (run_dir,) = [p for p in (tmp_path / "r" / "runs").iterdir() if p.is_dir()]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["n_test_loaded"] == 6 and record["skipped_files"]["count"] == 1
    assert record["threat_model"]["auxiliary_split"]["dataset"] == "synthetic-faces"
    assert record["threat_model"]["private_split"]["dataset"] == "folder"
    assert len(list(csv.DictReader((run_dir / "metrics.csv").open()))) == 6
