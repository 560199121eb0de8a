"""The metric convention table (bench/metric_conventions.py) is the one source of the registered conventions, the
default lists and the `--metrics` help, and moving the metrics onto it changed nothing that is stored.

tests/data/metric_conventions.json was written from the registry of the commit before the table existed (every
metric class then hand-written); only label-accuracy's one-line help, which its docstring cut mid-sentence, was
changed since. A change to a stored convention text, version, direction or range must show up here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bench import metric_conventions as mc
from bench import registry
from bench.cli import main
from bench.run.metric_defaults import default_metrics
from bench.run.plan import RunRequest, plan

PINNED = Path(__file__).parent / "data" / "metric_conventions.json"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
# A face reconstruction's default metrics, in order, as docs/metrics.md and README.md list them.
FACE_DEFAULTS = ("mse", "psnr", "ssim", "ssim-sift-compat", "ssim-matlab", "lpips", "fid", "kid", "fd-dlib", "semsim",
                 "id-cosine", "rsr@fmr=0.1%", "rsr@fmr=1%")


def _meta(name: str) -> dict:
    entry = registry.metrics.get(name)
    meta = {k: entry.meta[k] for k in ("version", "convention", "higher_is_better", "level", "inputs", "attribute",
                                       "needs_weights", "needs_reference")}
    meta["range"] = [repr(x) for x in entry.meta["range"]]
    meta["summary"] = entry.summary
    return meta


def test_every_builtin_metric_keeps_its_pinned_record() -> None:
    pinned = json.loads(PINNED.read_text(encoding="utf-8"))
    builtin = sorted(e.name for e in registry.metrics if e.source == "builtin")
    assert builtin == sorted(pinned) == sorted(mc.CONVENTIONS)
    for name, want in pinned.items():
        assert _meta(name) == want, name


def test_a_default_run_scores_the_documented_metrics_with_their_conventions() -> None:
    p = plan(RunRequest(attack="face-cnn", profile="smoke", n_train=4, n_test=2))
    assert tuple(p.metrics) == FACE_DEFAULTS
    pinned = json.loads(PINNED.read_text(encoding="utf-8"))
    for name, metric in p.metrics.items():
        assert metric.convention == pinned[name]["convention"] and metric.version == pinned[name]["version"], name
    documented = re.findall(r"^\| `([^`]+)`(?:, `([^`]+)`)? \|", DOCS.read_text(encoding="utf-8"), re.M)
    assert set(FACE_DEFAULTS) <= {n for pair in documented for n in pair if n}


def test_the_default_lists_come_from_the_table_in_its_order() -> None:
    assert mc.names(mc.IMAGE, mc.FACE_IMAGE) + mc.names(mc.IDENTITY) == FACE_DEFAULTS
    assert mc.names(mc.FACE_IMAGE) == ("fd-dlib",)
    with pytest.raises(ValueError, match="unknown default group"):
        mc.names("images")
    cifar = default_metrics(registry.attacks.get("cfgan").obj, registry.datasets.get("cifar10").obj)
    assert "fd-dlib" not in cifar and cifar == tuple(n for n in FACE_DEFAULTS[:10] if n != "fd-dlib")


def test_family_rows_register_subclasses_with_their_arguments() -> None:
    for row in mc.TABLE:
        cls = registry.metrics.get(row.name).obj
        base = getattr(__import__(row.base.split(":")[0], fromlist=["x"]), row.base.split(":")[1])
        assert issubclass(cls, base) and cls.name == row.name and cls.version == row.version
        if row.convention is not None:
            assert cls.convention == row.convention
        if row.args and not hasattr(base, "convention_attributes"):
            assert {k: getattr(cls, k) for k in row.args} == dict(row.args), row.name
    assert registry.metrics.get("rsr@fmr=0.1%").obj.fmr == 0.001
    assert registry.metrics.get("lpips-vgg").obj.variant.backbone == "vgg"


def test_a_new_convention_is_one_row() -> None:
    """A row with new arguments for the SSIM family scores as its reference does (skimage, 7×7 box on 8 bit)."""
    skimage_metrics = pytest.importorskip("skimage.metrics", reason="scikit-image is the reference")
    row = mc.Convention("test-ssim-box7", "bench.metrics.ssim:SSIMMetric", "test: 8-bit, uniform 7x7, sample cov",
                        "Test convention.", "", {"space": "rgb-8bit", "window": ("uniform", 7), "data_range": 255.0,
                                                 "sample_covariance": True, "float64": False})
    try:
        cls = mc.register("bench.metrics.ssim", rows=(row,))["test-ssim-box7"]
        assert registry.metrics.get("test-ssim-box7").meta["convention"] == "test: 8-bit, uniform 7x7, sample cov"
        g = torch.Generator().manual_seed(3)
        a = torch.rand(2, 3, 24, 30, generator=g, dtype=torch.float64)
        b = (a + 0.2 * torch.rand(2, 3, 24, 30, generator=g, dtype=torch.float64)).clamp(0, 1)
        got = cls().per_sample(a, b).numpy()
        a8 = np.round(a.numpy() * 255).astype(np.uint8).transpose(0, 2, 3, 1)
        b8 = np.round(b.numpy() * 255).astype(np.uint8).transpose(0, 2, 3, 1)
        want = [skimage_metrics.structural_similarity(x, y, win_size=7, data_range=255, channel_axis=-1)
                for x, y in zip(a8, b8)]
        assert np.allclose(got, want, atol=1e-4, rtol=0)
    finally:
        registry.metrics.unregister("test-ssim-box7")


def test_a_class_that_disagrees_with_its_row_is_refused() -> None:
    row = mc.Convention("mse", "bench.metrics.pixel:MSE", "another text", "x", mc.IMAGE)
    with pytest.raises(RuntimeError, match="disagrees with its row 'mse'"):
        mc.register("bench.metrics.pixel", rows=(row,))


def _squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("command", ["run", "grid"])
def test_metrics_help_lists_the_defaults_of_the_table(command: str) -> None:
    out = CliRunner().invoke(main, [command, "--help"], terminal_width=200)
    assert out.exit_code == 0, out.output
    help_text = _squeezed(out.output)
    assert _squeezed(",".join(mc.names(mc.IMAGE, mc.FACE_IMAGE))) in help_text
    assert _squeezed(",".join(mc.names(mc.IDENTITY))) in help_text


def test_list_metrics_marks_the_default_lists() -> None:
    out = CliRunner().invoke(main, ["list", "metrics"])
    assert out.exit_code == 0, out.output
    lines = {line.split()[0]: line for line in out.output.splitlines()[1:] if line.strip()}
    for name in FACE_DEFAULTS:
        assert "default:" in lines[name], name
    for name in ("ssim-y-downsampled", "lpips-vgg", "gender-accuracy"):
        assert "default:" not in lines[name], name
    assert "default: attacks that predict gender" in lines["inferred-gender-accuracy"]
