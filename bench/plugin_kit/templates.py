"""The files of a new plugin package, as text with `{{field}}` placeholders (name, dist, module, cls, kind, kinds,
group). Each plugin skeleton is small but real, and passes `bench plugin check` as written."""

from __future__ import annotations

import re
from typing import Mapping


def render(template: str, fields: Mapping[str, str]) -> str:
    """Fill every `{{field}}`; an unknown field is a bug in the template, so it raises."""
    return re.sub(r"\{\{(\w+)\}\}", lambda m: fields[m.group(1)], template)


PYPROJECT = '''\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{{dist}}"
version = "0.1.0"
description = "A leakbench {{kind}} plugin: {{name}}"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["leakbench"]

# The entry point is how bench finds the plugin once the package is installed.
[project.entry-points."{{group}}"]
{{name}} = "{{module}}.plugin:{{cls}}"

[tool.setuptools]
packages = ["{{module}}"]
'''

INIT = '''\
"""{{dist}}: the leakbench {{kind}} `{{name}}`."""

from {{module}}.plugin import {{cls}}  # noqa: F401
'''

TEST = '''\
"""The plugin passes leakbench's contract test kit (the same checks every built-in passes)."""

from bench.contract import check_plugin


def test_{{module}}_passes_the_contract_kit() -> None:
    results = check_plugin("{{name}}", "{{kinds}}")
    failed = [(check, detail) for check, ok, detail in results if not ok]
    assert results and not failed, failed
'''

README = '''\
# {{dist}}

A leakbench {{kind}} plugin: `{{name}}`. The code is in `{{module}}/plugin.py`; replace the
skeleton's method with yours and keep the class attributes honest (what it consumes or accepts, its parameters, its
`version`, which you bump whenever a change alters its output).

Install it beside leakbench, then check and run it:

```
pip install -e .
bench plugin check {{name}}
python -m pytest tests
```

See leakbench's docs/plugins.md (the interfaces) and docs/SUBMITTING.md (how to submit results to the leaderboard).
'''

ATTACK = '''\
"""{{name}}: a leakbench attack. Replace `fit` and `reconstruct` with your method."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from bench.features import FeatureSet, Requirement
from bench.params import Param
from bench.plugins import Attack, FitContext


class {{cls}}(Attack):
    """One line that says what the attack does (shown by `bench list attacks`)."""

    name = "{{name}}"
    version = "1"  # bump when a change alters the output: cached results of older versions are never reused
    consumes = Requirement("*")  # e.g. Requirement("sift", {"has_coordinates": True}); "*" accepts any feature kind
    default_extractor = "sift"  # the victim extractor when `bench run` is not given --extractor
    paper = "skeleton (no paper): the mean auxiliary image, blended towards grey"
    # Declared parameters: `bench run --attack-arg blend=0.5`; validated before any work, part of the run id.
    params = {"blend": Param(float, 0.0, "share of mid-grey blended into the mean image", low=0.0, high=1.0)}

    def __init__(self, profile: str, image_size: int, device: torch.device | str = "cpu", seed: int = 0,
                 params: Mapping[str, Any] | None = None) -> None:
        super().__init__(profile, image_size, device, seed, params)
        self.mean: torch.Tensor | None = None

    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        """Learn from the auxiliary split only: its released features, its images (N×3×S×S), ctx.labels."""
        self.mean = images.double().mean(dim=0).float()

    def reconstruct(self, features: FeatureSet, progress: bool = True) -> torch.Tensor:
        """N×3×S×S float32 images in [0, 1] on the CPU, each from its own record only (batch independence)."""
        if self.mean is None:
            raise RuntimeError("{{name}}: reconstruct() before fit()")
        blend = float(self.params["blend"])
        image = (1.0 - blend) * self.mean + blend * 0.5
        return image[None].expand(len(features), -1, -1, -1).clone()

    def state_dict(self) -> dict[str, Any]:
        """Tensors, numbers, strings, lists and dicts only: loaded with torch.load(weights_only=True)."""
        return {"mean": self.mean}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.mean = state["mean"]
'''

DEFENSE = '''\
"""{{name}}: a leakbench defense. Replace `protect` with your method."""

from __future__ import annotations

import numpy as np

from bench.features import FeatureSet, FeatureSpec
from bench.features.sift import SiftSet
from bench.params import Param
from bench.plugins import Defense


class {{cls}}(Defense):
    """One line that says what the defense does (shown by `bench list defenses`)."""

    name = "{{name}}"
    version = "1"  # bump when a change alters the output
    accepts = ("sift",)  # the feature kinds it can protect
    params = {"sigma": Param(float, 1.0, "std of the Gaussian jitter added to keypoint x and y (pixels)", low=0.0)}

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        """What it releases: the same kind and flags (say so here when a defense removes a field)."""
        return spec

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        """A new feature set (never modify `features`); every random draw comes from `rng` (the secret key)."""
        if not isinstance(features, SiftSet):
            raise TypeError(f"{{name}} protects SIFT features, got {features.kind!r}")
        keypoints = np.array(features.keypoints, dtype=np.float32, copy=True)
        if features.flags.get("has_coordinates", True):
            noise = rng.standard_normal((len(keypoints), 2)).astype(np.float32)
            keypoints[:, :2] += np.float32(self.params["sigma"]) * noise
        return SiftSet(keypoints, np.array(features.descriptors, copy=True), np.array(features.offsets, copy=True),
                       features.flags, features.meta)
'''

METRIC = '''\
"""{{name}}: a leakbench metric. Replace `per_sample` with your measure and pin its convention."""

from __future__ import annotations

import torch

from bench.plugins import Metric


class {{cls}}(Metric):
    """One line that says what the metric measures (shown by `bench list metrics`)."""

    name = "{{name}}"
    version = "1"  # bump when a change alters the values
    higher_is_better = False
    value_range = (0.0, 1.0)
    level = "sample"  # one value per private image; the set value is their mean
    # The convention is recorded with every value and compared on `bench leaderboard import`: say exactly what is
    # computed, on what inputs, at which size.
    convention = "mean absolute error over pixels and channels; RGB in [0, 1], 8-bit quantised, at the scoring size"

    def per_sample(self, recon: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Values (N,) for N×3×H×W images in [0, 1]; NaN marks a value that is not defined."""
        return (recon.double() - ref.double()).abs().mean(dim=(1, 2, 3))
'''
