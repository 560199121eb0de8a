"""The one table of metric conventions (pyiqa style): every built-in metric is a named row, and a different
convention is a different row, never a flag buried in code.

A row holds the metric's name, the class that computes it (`base`, "module:Class"), the arguments that this
convention fixes (set as class attributes of the registered class), the convention text recorded with every value,
its default-list group and its one-line help. From this table come:

- the registered metrics: a row whose base is a family class (`SSIMMetric`, `LPIPSMetric`,
  `ReversibilitySuccessRate`) registers a subclass with the row's arguments; a row whose base is a class written
  for that one metric registers that class, which reads its convention text from here (`text(name)`);
- the default metric lists (`names("image")`, ...), which bench/run/metric_defaults.py combines by its rule;
- the `--metrics` help of `bench run` and `bench grid` (`metrics_help`) and the `[default: ...]` mark of
  `bench list metrics`.

Adding a convention is adding one row (docs/metrics.md, "Adding a convention"). Changing a row's text, arguments or
version changes what its stored values mean: bump `version` (tests/data/metric_conventions.json pins the texts).

This module imports neither torch nor any metric module, so the command line can build its help from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Mapping

# Default-list groups (bench/run/metric_defaults.py holds the rule that combines them).
IMAGE = "image"  # every image attack: the standard image conventions
FACE_IMAGE = "image-faces"  # also an image default, but computed on face descriptors: dropped on `not_faces` data
IDENTITY = "identity"  # a face reconstruction: identity leakage as a face recognition system judges it
GROUPS = (IMAGE, FACE_IMAGE, IDENTITY)


@dataclass(frozen=True)
class Convention:
    """One named metric convention: what computes it, with which fixed arguments, and the text stored with it."""

    name: str
    base: str  # "module:Class" computing it; a family class gets `args` as class attributes of a subclass
    convention: str | None  # recorded with every value; None: the class sets it per run (semsim: its checkpoint)
    summary: str  # the one-line help (`bench list metrics`)
    default: str = ""  # "" (not a default), IMAGE, FACE_IMAGE or IDENTITY
    args: Mapping[str, Any] = field(default_factory=dict)
    version: str = "1"


# ----------------------------------------------------------------------------------------- shared texts
DLIB_CONVENTION = ("dlib face descriptors (dlib_face_recognition_resnet_model_v1, 128-d, no jitter) of 150-px chips "
                   "aligned by shape_predictor_5_face_landmarks on the largest face dlib's HOG detector finds in the "
                   "image resized to 256 px (uint8); a detector miss uses the whole image as the face box and is "
                   "counted in the note")
INCEPTION = ("torch-fidelity pt_inception-2015-12-05 pool3 2048-d, images quantised to uint8 (round(255x)), "
             "resized by the extractor to 299 (TensorFlow-1 bilinear)")


def lpips_convention(args: Mapping[str, Any]) -> str:
    """The convention text of an LPIPS row, from its fixed arguments."""
    feed = ("RGB [0, 1] scaled to [-1, 1] (2x-1)" if args["to_signed"]
            else "RGB [0, 1] fed UNSCALED (no 2x-1, as SemSim's code)")
    size = (f"both images resized to {args['resize']}x{args['resize']} (bilinear, antialiased) first"
            if args["resize"] else "at the scoring size")
    return (f"LPIPS v0.1, {args['backbone']} backbone ({args['backbone_weights']}) + v0.1 linear layers "
            f"({args['linear_weights']}); {feed}, then the v0.1 scaling layer; {size}; channel-unit-normalised "
            f"activations, squared difference, learned 1x1 weights, spatial mean, sum over layers; per image, set "
            f"value = mean over images; float32")


def rsr_convention(args: Mapping[str, Any]) -> str:
    """The convention text of a reversibility-success-rate row, from its false-match rate."""
    return (f"{DLIB_CONVENTION}; RSR = share of reconstructions whose cosine similarity to their own original's "
            f"descriptor is strictly above the threshold at FMR {args['fmr_label']}; threshold = the (k+1)-th highest "
            "of the M impostor scores, k = floor(fmr*M), impostor scores = cosine similarities of the originals of "
            "every unordered pair of different samples of the test split (pairs of one person excluded when identity "
            "labels exist); higher means more reconstructions are accepted as their original's identity (the "
            "attacker's view)")


def _lpips(name: str, backbone: str, backbone_weights: str, linear_weights: str, to_signed: bool,
           resize: int | None, summary: str, default: str = "") -> Convention:
    args = {"backbone": backbone, "backbone_weights": backbone_weights, "linear_weights": linear_weights,
            "to_signed": to_signed, "resize": resize}
    return Convention(name, "bench.metrics.lpips:LPIPSMetric", lpips_convention(args), summary, default, args)


def _rsr(fmr: float, label: str) -> Convention:
    args = {"fmr": fmr, "fmr_label": label}
    return Convention(f"rsr@fmr={label}", "bench.metrics.identity:ReversibilitySuccessRate", rsr_convention(args),
                      f"Reversibility success rate at FMR {label} (dlib face system, test-split impostor threshold); "
                      "higher = leakier.", IDENTITY, args)


_GAUSSIAN = ("gaussian", 1.5, 3.5)  # sigma, truncation in sigmas: 11 taps, as scipy.ndimage / fspecial build it

# ------------------------------------------------------------------------------------------------ the table
TABLE: tuple[Convention, ...] = (
    # ---- pixel differences
    Convention("mse", "bench.metrics.pixel:MSE",
               "mean over pixels and RGB channels of (recon - ref)^2, values in [0, 1], float64",
               "Mean squared error per image on RGB values in [0, 1]; 0 means identical images.", IMAGE),
    Convention("psnr", "bench.metrics.pixel:PSNR",
               "10*log10(1/MSE) per image on RGB in [0, 1] (data range 1), set value = mean over images; "
               "an identical pair gives +inf (and so does the set mean)",
               "Peak signal-to-noise ratio in dB per image, data range 1; identical images give +inf.", IMAGE),
    # ---- SSIM: one family (bench/metrics/ssim.py), the arguments say what it is fed and how it filters
    Convention("ssim", "bench.metrics.ssim:SSIMMetric",
               "Wang et al. 2004: Gaussian window sigma=1.5 truncated at 3.5 sigma (11 taps), population covariance, "
               "K1=0.01, K2=0.03, data range 1 on RGB in [0, 1], per channel then mean over channels, mean over the "
               "fully-inside windows; equals skimage structural_similarity(gaussian_weights=True, sigma=1.5, "
               "use_sample_covariance=False, data_range=1, channel_axis=-1)",
               "SSIM of Wang et al. 2004 (Gaussian σ=1.5 window, data range 1), per image, averaged over RGB "
               "channels.",
               IMAGE, {"space": "rgb", "window": _GAUSSIAN, "data_range": 1.0, "sample_covariance": False,
                       "float64": False}),
    Convention("ssim-sift-compat", "bench.metrics.ssim:SSIMMetric",
               "SIFT-papers SSIM (not Wang et al. 2004): images quantised to 8 bit (round(clamp(x,0,1)*255)), uniform "
               "11x11 window, sample covariance (NP/(NP-1)), K1=0.01, K2=0.03, data range 255, per channel then mean "
               "over channels; equals skimage structural_similarity(a8, b8, win_size=11, data_range=255, "
               "channel_axis=-1)",
               "SSIM as the SIFT-inversion papers report it: 8-bit images, 11×11 box window, sample covariance.",
               IMAGE, {"space": "rgb-8bit", "window": ("uniform", 11), "data_range": 255.0,
                       "sample_covariance": True, "float64": False}),
    Convention("ssim-matlab", "bench.metrics.ssim:SSIMMetric",
               "MATLAB ssim.m of Wang et al. on rgb2gray input, no automatic downsampling (not the RGB 'ssim'): RGB "
               "clamped to [0, 1] and rounded to 8-bit levels, gray = 0.298936021293775 R + 0.587043074451121 G + "
               "0.114020904255103 B (rgb2gray) rounded to uint8, float64, data range L=255, K1=0.01, K2=0.03, "
               "Gaussian window fspecial('gaussian', 11, 1.5), population covariance, 'valid' filtering, mean of the "
               "SSIM map; reproduces the SSIM values published with TID2013 to 4 decimals",
               "SSIM as Wang et al.'s MATLAB ssim.m gives it on rgb2gray input (the values published with TID2013).",
               IMAGE, {"space": "gray-matlab", "window": _GAUSSIAN, "data_range": 255.0, "sample_covariance": False,
                       "float64": True},  # float64 window sums: ssim.m's published values hold to 4 decimals
               version="2"),  # 1: Y of YCbCr with automatic downsampling (now `ssim-y-downsampled`)
    Convention("ssim-y-downsampled", "bench.metrics.ssim:SSIMMetric",
               "SSIM on Y of YCbCr as rgb2ycbcr (ITU-R BT.601, Y = 16 + "
               "65.481 R + 128.553 G + 24.966 B on RGB clamped to [0, 1], rounded to an integer, values 16..235), "
               "data range L=255, K1=0.01, K2=0.03, Gaussian window fspecial('gaussian', 11, 1.5), population "
               "covariance, ssim.m's automatic downsampling f = max(1, round(min(H, W) / 256)): f×f mean filter with "
               "'symmetric' borders then every f-th row and column from the first, 'valid' filtering, mean of the "
               "SSIM map; equals pyiqa's SSIM arch with test_y_channel=True, color_space='ycbcr', downsample=True "
               "when f <= 2 with H, W multiples of f (for f >= 3 pyiqa's avg_pool2d is not centred as MATLAB's "
               "filter is) and no window has negative contrast-structure (pyiqa clamps it at 0); pyiqa's default "
               "'ssim' (YIQ, no downsampling) differs; not the values published with TID2013 (those are "
               "'ssim-matlab')",
               "SSIM on the BT.601 Y channel with ssim.m's automatic downsampling (pyiqa's Y-channel SSIM convention).",
               "", {"space": "y-downsampled", "window": _GAUSSIAN, "data_range": 255.0, "sample_covariance": False,
                    "float64": False}),
    # ---- LPIPS v0.1: one family (bench/metrics/lpips.py)
    _lpips("lpips", "alex", "alexnet", "lpips-alex", True, None,
           "LPIPS v0.1, AlexNet backbone (the standard default); 0 means identical images.", IMAGE),
    _lpips("lpips-vgg", "vgg", "vgg16", "lpips-vgg", True, None,
           "LPIPS v0.1, VGG16 backbone; 0 means identical images."),
    _lpips("lpips-squeeze", "squeeze", "squeezenet1_1", "lpips-squeeze", True, None,
           "LPIPS v0.1, SqueezeNet 1.1 backbone; 0 means identical images."),
    _lpips("lpips-semsim-compat", "squeeze", "squeezenet1_1", "lpips-squeeze", False, 256,
           "LPIPS-squeeze as the SemSim paper's code computes it: [0, 1] fed unscaled, at 256×256 "
           "(a compatibility convention, not the standard)."),
    # ---- distributions (bench/metrics/distribution.py)
    Convention("fid", "bench.metrics.distribution:FID",
               f"{INCEPTION}; Fréchet distance |mu1-mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2), covariances with "
               "n-1, in float64; tr sqrt(S1 S2) = nuclear norm of L1'L2 (S_i = L_i L_i'), equal to the trace of "
               "scipy sqrtm(S1 S2) and to torch-fidelity's eigenvalue sum; sample count recorded; biased below "
               "2048 images",
               "Fréchet Inception distance between reconstructions and originals (torch-fidelity's); lower is better.",
               IMAGE),
    Convention("kid", "bench.metrics.distribution:KID",
               f"{INCEPTION}; KID = mean over 100 subsets of the unbiased MMD^2 with the polynomial "
               "kernel (x.y/2048 + 1)^3, subset size min(1000, n_recon, n_ref) drawn without "
               "replacement by numpy RandomState(2020) (torch-fidelity's defaults, size capped at n)",
               "Kernel Inception distance (unbiased polynomial-kernel MMD², torch-fidelity's defaults); lower is "
               "better.",
               IMAGE),
    Convention("fd-dlib", "bench.metrics.distribution:FrechetDlibFace",
               "dlib face descriptors (dlib_face_recognition_resnet_model_v1, 128-d, no jitter) of 150-px chips "
               "aligned by shape_predictor_5_face_landmarks (get_face_chip, padding 0.25) on the largest face that "
               "dlib's frontal HOG detector finds in the image resized to 256 px (uint8, round(255x)); a detector "
               "miss uses the whole image as the face box and is counted in the note; Fréchet distance as fid's "
               "formula; an offline-capable distribution metric for faces, not comparable with FID",
               "Fréchet distance of dlib 128-d face descriptors (offline; not comparable with FID); lower is better.",
               FACE_IMAGE),
    # ---- SemSim: its text names the checkpoint a run uses (bench/metrics/semsim.py)
    Convention("semsim", "bench.metrics.semsim:SemSim", None,
               "SemSim: L2 distance between learned embeddings of original and reconstruction; 0 means identical.",
               IMAGE),
    # ---- identity leakage on dlib face descriptors (bench/metrics/identity.py)
    Convention("id-cosine", "bench.metrics.identity:IdCosine",
               f"{DLIB_CONVENTION}; cosine similarity of the original's and the reconstruction's descriptors "
               "(float64, clipped to [-1, 1]); higher means the reconstruction carries more of the original's "
               "identity (the attacker's view); set value = mean over samples",
               "Cosine similarity of dlib face descriptors of original and reconstruction; higher = more identity "
               "leaked.", IDENTITY),
    _rsr(0.001, "0.1%"),
    _rsr(0.01, "1%"),
    Convention("gender-accuracy", "bench.metrics.identity:GenderAccuracy",
               f"{DLIB_CONVENTION}; a logistic regression (L2, C=1, standardised features, balanced class "
               "weights, L-BFGS) fitted on the auxiliary originals' descriptors and gender labels predicts the "
               "gender of each reconstruction; value = balanced accuracy (mean per-class recall) against the "
               "private split's gender labels (unlabelled samples left out); higher means more soft-biometric "
               "leakage (the attacker's view); 0.5 is chance",
               "Balanced accuracy of gender predicted from reconstructions (classifier fit on aux originals); "
               "higher = leakier."),
    # ---- attributes: scored by default for the attacks that predict them (Metric.attribute)
    Convention("inferred-gender-accuracy", "bench.metrics.attributes:InferredGenderAccuracy",
               "balanced accuracy = mean over the gender classes present in the private split's labels of the "
               "share of that class predicted as it (labels < 0 left out); predictions from an attribute attack "
               "on released features; higher means more leakage (the attacker's view); 0.5 is chance",
               "Balanced accuracy of the gender an attribute attack infers from released features; 0.5 = chance."),
    Convention("label-accuracy", "bench.metrics.class_labels:LabelAccuracy",
               "accuracy = share of private images whose predicted class label equals the dataset's `label`; "
               "per image 1 (recovered) or 0; higher means more leakage (the attacker's view)",
               "Share of private images whose class label the attack predicted exactly (per image 1 or 0; set "
               "value = the mean)."),
)

CONVENTIONS: dict[str, Convention] = {row.name: row for row in TABLE}
if len(CONVENTIONS) != len(TABLE):
    raise RuntimeError("two rows of the metric convention table share a name")


def text(name: str) -> str:
    """The convention text of row `name` (for a class written for that one metric)."""
    conv = CONVENTIONS[name].convention
    if conv is None:
        raise KeyError(f"metric {name!r} sets its convention per run")
    return conv


def names(*groups: str) -> tuple[str, ...]:
    """The names of the rows in any of `groups`, in table order: the default lists."""
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown default group {', '.join(unknown)}; groups: {', '.join(GROUPS)}")
    return tuple(row.name for row in TABLE if row.default in groups)


def metrics_help(scope: str) -> str:
    """The `--metrics` help of a run command (`scope`: what its default is, e.g. "each run's defaults")."""
    return (f"Comma-separated metrics, or `all` [{scope}: what the attack leaks — an image attack scores "
            f"{','.join(names(IMAGE, FACE_IMAGE))} ({','.join(names(FACE_IMAGE))} not on datasets that declare "
            f"not_faces), a face reconstruction also {','.join(names(IDENTITY))}; an attribute attack its "
            "attribute's metric] (`bench list metrics`; README: default metrics).")


def default_mark(name: str) -> str:
    """How `bench list metrics` marks a row of a default list ('' for a metric in none)."""
    row = CONVENTIONS.get(name)
    if row is None or not row.default:
        return ""
    return {IMAGE: "default: image attacks", FACE_IMAGE: "default: image attacks, not on not_faces data",
            IDENTITY: "default: face reconstructions"}[row.default]


def _subclass(row: Convention, base: type) -> type:
    attrs: dict[str, Any] = {"name": row.name, "version": row.version, "__doc__": row.summary,
                             "__module__": base.__module__}
    hook = getattr(base, "convention_attributes", None)
    attrs.update(hook(row) if hook is not None else dict(row.args))
    if row.convention is not None:
        attrs["convention"] = row.convention
    cls = type(base.__name__ + "_" + "".join(c if c.isalnum() else "_" for c in row.name), (base,), attrs)
    return cls


def register(module: str, rows: tuple[Convention, ...] | None = None) -> dict[str, type]:
    """Register every row of `rows` (default: the table) whose base lives in `module` (called at the end of that
    module, whose classes are then defined); returns name -> registered class.

    A row whose base class carries that row's name is registered as that class (it must read its text with
    `text(name)`, checked here); any other row registers a subclass of its base with the row's name, version,
    summary, convention and arguments (the base's `convention_attributes(row)` may turn the arguments into the
    attributes it reads)."""
    from bench.plugins import register_metric

    mod = import_module(module)
    out: dict[str, type] = {}
    for row in TABLE if rows is None else rows:
        mod_name, _, cls_name = row.base.partition(":")
        if mod_name != module:
            continue
        base = getattr(mod, cls_name)
        if getattr(base, "name", "") == row.name:
            if row.args or (row.convention is not None and base.convention != row.convention) \
                    or base.version != row.version:
                raise RuntimeError(f"metric class {cls_name} disagrees with its row {row.name!r} of the convention "
                                   "table (arguments, convention text or version)")
            cls = base
        else:
            cls = _subclass(row, base)
        out[row.name] = register_metric(cls, summary=row.summary)
    return out


__all__ = ["CONVENTIONS", "Convention", "DLIB_CONVENTION", "FACE_IMAGE", "GROUPS", "IDENTITY", "IMAGE", "INCEPTION",
           "TABLE", "default_mark", "lpips_convention", "metrics_help", "names", "register", "rsr_convention", "text"]
