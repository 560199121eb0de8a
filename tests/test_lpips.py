"""The LPIPS metric family: parity with the `lpips` package on identical random backbones, conventions, and the
weights path (unavailable with its fix when files are missing; filled in without reconstructing once imported)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import warnings
from pathlib import Path
from typing import Iterator

import lpips as lpips_pkg
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from bench import registry, weights
from bench.metrics.lpips import VARIANTS
from bench.plugins import MetricUnavailable

NETS = {"alex": ("alexnet", "lpips-alex"), "vgg": ("vgg16", "lpips-vgg"), "squeeze": ("squeezenet1_1", "lpips-squeeze")}


def reference_model(net: str, seed: int = 0) -> lpips_pkg.LPIPS:
    """The package's LPIPS with a random backbone (pnet_rand: no download) and its shipped v0.1 linear layers."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():  # torchvision's note that `pretrained=False` is deprecated
        warnings.simplefilter("ignore", UserWarning)
        model = lpips_pkg.LPIPS(net=net, pnet_rand=True, version="0.1", verbose=False)
    return model.eval()


def standin_files(model: lpips_pkg.LPIPS, folder: Path, net: str) -> tuple[Path, Path]:
    """The model's backbone (in torchvision's `features.N` naming) and linear layers, saved as weight files."""
    state = model.state_dict()
    backbone = {re.sub(r"^net\.slice\d+\.", "features.", k): v.clone() for k, v in state.items() if k.startswith("net.")}
    linear = {k: v.clone() for k, v in state.items() if k.startswith("lin")}
    folder.mkdir(parents=True, exist_ok=True)
    b, lin = folder / f"standin-{net}-backbone.pth", folder / f"standin-{net}-lin.pth"
    torch.save(backbone, b)
    torch.save(linear, lin)
    return b, lin


@contextlib.contextmanager
def pinned_to(files: dict[str, Path]) -> Iterator[None]:
    """Temporarily pin manifest entries {name: stand-in file} to the stand-ins' digests and sizes, and import them."""
    with contextlib.ExitStack() as stack:
        for name, path in files.items():
            stack.enter_context(weights.override(
                name, sha256=hashlib.sha256(path.read_bytes()).hexdigest(), sha256_prefix=None,
                size=path.stat().st_size, package=None, package_path=None))
        for name, path in files.items():
            weights.import_file(path, name)
        yield


def images(n: int = 5, size: int = 48, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 3, size, size, generator=g)
    b = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    b[0] = a[0]  # one identical pair
    return a, b


@pytest.mark.parametrize("net", ["alex", "vgg", "squeeze"])
def test_equal_to_the_lpips_package(net: str, bench_home: Path, tmp_path: Path) -> None:
    ref_model = reference_model(net)
    backbone_file, lin_file = standin_files(ref_model, tmp_path / "standins", net)
    backbone_name, lin_name = NETS[net]
    metric_name = {"alex": "lpips", "vgg": "lpips-vgg", "squeeze": "lpips-squeeze"}[net]
    a, b = images()
    with pinned_to({backbone_name: backbone_file, lin_name: lin_file}):
        metric = registry.metrics.get(metric_name).obj().load("cpu")
        mine = metric.per_sample(b, a)
    with torch.no_grad():
        theirs = ref_model(b, a, normalize=True).flatten().double()
    assert mine.dtype == torch.float64 and mine.shape == (5,)
    assert torch.allclose(mine, theirs, atol=1e-5, rtol=0), (mine, theirs)
    assert mine[0] == 0 and (mine[1:] > 0).all()


def test_semsim_compat_feeds_unscaled_inputs_at_256(bench_home: Path, tmp_path: Path) -> None:
    ref_model = reference_model("squeeze")
    backbone_file, lin_file = standin_files(ref_model, tmp_path / "standins", "squeeze")
    a, b = images(n=3, size=40)
    with pinned_to({"squeezenet1_1": backbone_file, "lpips-squeeze": lin_file}):
        compat = registry.metrics.get("lpips-semsim-compat").obj().load("cpu")
        standard = registry.metrics.get("lpips-squeeze").obj().load("cpu")
        got = compat.per_sample(b, a)
        std = standard.per_sample(b, a)

    def up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False, antialias=True)

    with torch.no_grad():
        theirs = ref_model(up(b), up(a), normalize=False).flatten().double()  # [0, 1] fed as is
    assert torch.allclose(got, theirs, atol=1e-5, rtol=0)
    assert not torch.allclose(got, std, atol=1e-3)  # a different convention, with its own name
    v = VARIANTS["lpips-semsim-compat"]
    assert v.backbone == "squeeze" and v.resize == 256 and not v.to_signed
    conv = registry.metrics.get("lpips-semsim-compat").obj.convention
    assert "UNSCALED" in conv and "256x256" in conv


def test_registered_metadata() -> None:
    for name in ("lpips", "lpips-vgg", "lpips-squeeze", "lpips-semsim-compat"):
        meta = registry.metrics.get(name).meta
        assert meta["higher_is_better"] is False and meta["range"] == [0.0, float("inf")]
        assert meta["needs_weights"] is True and meta["level"] == "sample" and "v0.1" in meta["convention"]
    assert "[-1, 1]" in registry.metrics.get("lpips").obj.convention
    assert "alex" in registry.metrics.get("lpips").obj.convention


def test_unavailable_names_both_fixes(bench_home: Path) -> None:
    metric = registry.metrics.get("lpips-vgg").obj()
    with pytest.raises(MetricUnavailable) as err:
        metric.load("cpu")
    assert err.value.fix == "bench weights pull vgg16 (offline: bench weights import vgg16-397923af.pth)"
    with weights.override("lpips-vgg", package=None, package_path=None):  # linear layers not shipped either
        with pytest.raises(MetricUnavailable) as err:
            metric.load("cpu")
    assert "bench weights pull vgg16" in err.value.fix and "bench weights pull lpips-vgg" in err.value.fix


RUN = ["run", "--attack", "mean-image", "--profile", "smoke", "--n-train", "6", "--n-test", "4",
       "--metrics", "lpips,psnr", "--quiet", "--results"]


def test_run_reports_unavailable_then_fills_in_without_reconstructing(bench_home: Path, tmp_path: Path) -> None:
    from bench.cli import main

    results = tmp_path / "results"
    out = CliRunner().invoke(main, RUN + [str(results)])
    assert out.exit_code == 0, out.output
    line = next(x for x in out.output.splitlines() if x.startswith("lpips "))
    assert "unavailable" in line and "bench weights pull alexnet" in line
    assert "bench weights import alexnet-owt-7be5be79.pth" in line
    (run_dir,) = [p for p in (results / "runs").iterdir() if p.is_dir()]
    pngs = sorted((run_dir / "reconstructions").glob("*.png"))
    before = {p.name: p.stat().st_mtime_ns for p in pngs}
    assert len(before) == 4

    backbone_file, _ = standin_files(reference_model("alex"), tmp_path / "standins", "alex")
    with pinned_to({"alexnet": backbone_file}):  # the linear layers come from the lpips package as shipped
        out = CliRunner().invoke(main, RUN + [str(results)])
    assert out.exit_code == 0, out.output
    line = next(x for x in out.output.splitlines() if x.startswith("lpips "))
    assert "unavailable" not in line and float(line.split()[1]) > 0
    record = json.loads((run_dir / "run.json").read_text())
    assert record["cache"]["attack"] is True  # the attack was not retrained
    assert {p.name: p.stat().st_mtime_ns for p in sorted((run_dir / "reconstructions").glob("*.png"))} == before
    assert record["metric_conventions"]["lpips"].startswith("LPIPS v0.1, alex backbone")


@pytest.mark.parametrize("name,net", [("lpips", "alex"), ("lpips-semsim-compat", "squeeze")])
def test_contract_kit_passes_with_weights(name: str, net: str, bench_home: Path, tmp_path: Path) -> None:
    from bench.contract import check_plugin

    backbone_file, lin_file = standin_files(reference_model(net), tmp_path / "standins", net)
    with pinned_to(dict(zip(NETS[net], (backbone_file, lin_file)))):
        results = list(check_plugin(name, "metrics"))
    failed = [(check, detail) for check, ok, detail in results if not ok]
    assert not failed, failed
    assert not any("unavailable" in (detail or "") for _, _, detail in results)
