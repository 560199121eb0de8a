"""attribute-inference: soft biometrics (gender) predicted straight from released features, no image involved.

Both seeds measure it: the PE-MIU study predicts gender from (protected) face embeddings, and ShuffleBits reports
attribute recognition from the shuffled feature vectors (balanced accuracy). The attacker fits a binary
L2-regularised logistic regression (balanced class weights, standardised inputs, scipy L-BFGS; the classifier of
the `gender-accuracy` metric) on the auxiliary split's released features and gender labels, and predicts the
private split's gender. Float embeddings are read as numbers; ShuffleBits bit patterns as 32 bits per value
(`inputs.py`), never as floats. Scored by `inferred-gender-accuracy` (balanced accuracy; 0.5 is chance).

The papers use an SVM or kNN (PE-MIU) and a neural attribute head (ShuffleBits); a linear classifier is the
simple, deterministic stand-in here (a departure, stated in docs/embedding_inversion.md).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from bench.attacks.embedding_inversion.inputs import VECTOR_KINDS, Standardiser, raw_inputs
from bench.errors import BenchError
from bench.features import FeatureSet
from bench.logistic_regression import LogisticRegression
from bench.params import Param
from bench.plugins import Attack, FitContext, register_attack

ATTRIBUTE = "gender"


@register_attack
class AttributeInference(Attack):
    """Gender from released features (embeddings, or bit patterns read as bits): logistic regression on aux labels."""

    name = "attribute-inference"
    version = "1"
    consumes = VECTOR_KINDS
    outputs = "attributes"
    attributes = (ATTRIBUTE,)
    default_extractor = "dlib-face"
    paper = ("gender from (protected) feature vectors: the soft-biometric leakage of PE-MIU (Terhörst et al., IEEE "
             "Access 2020; Osorio-Roig et al., WIFS 2023) and the attribute recognition of Ni, Huttunen, Rahtu: On "
             "the importance of encrypting deep features, arXiv:2108.07147 (ShuffleBits)")
    params = {"c": Param(float, 1.0, "inverse L2 regularisation strength of the logistic regression", low=1e-6)}

    def __init__(self, profile: str, image_size: int, device: torch.device | str = "cpu", seed: int = 0,
                 params: Mapping[str, Any] | None = None) -> None:
        super().__init__(profile, image_size, device, seed, params)
        self.inputs = Standardiser()
        self.coef: np.ndarray | None = None
        self.bias = 0.0

    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        """Fit on the auxiliary split's released features and its gender labels (unlabelled samples left out)."""
        if not type(self).consumes.accepts(features.spec):
            raise BenchError(f"{self.name}: needs {type(self).consumes.describe()}, got {features.spec.describe()}")
        labels = ctx.labels.get(ATTRIBUTE)
        if labels is None:
            raise BenchError(f"{self.name}: the auxiliary split has no {ATTRIBUTE} labels; use a dataset with them, "
                             "e.g. --dataset utkface")
        y = np.asarray(labels).ravel().astype(np.int64)
        if len(y) != len(features):
            raise BenchError(f"{self.name}: {len(y)} labels for {len(features)} feature records")
        keep = y >= 0
        if len(np.unique(y[keep])) < 2:
            raise BenchError(f"{self.name}: the auxiliary split needs both {ATTRIBUTE} classes "
                             f"(labelled: {int(keep.sum())})")
        x = raw_inputs(features, self.name)
        self.inputs = Standardiser.fit(x, features.kind)
        # The classifier standardises again (a no-op on standardised inputs); its coefficients are kept alone.
        clf = LogisticRegression(c=float(self.params["c"])).fit(
            (x[keep] - self.inputs.mean) / self.inputs.scale, y[keep])
        assert clf.mean is not None and clf.scale is not None and clf.coef is not None
        self.coef = (clf.coef / clf.scale).astype(np.float64)
        self.bias = float(clf.bias - (clf.mean / clf.scale) @ clf.coef)
        ctx.notes.append(f"{self.name}: logistic regression on {int(keep.sum())} labelled auxiliary records "
                         f"({features.kind}, {x.shape[1]} inputs)")

    def predict(self, features: FeatureSet, progress: bool = True) -> dict[str, np.ndarray]:
        if self.coef is None:
            raise RuntimeError(f"{self.name}: predict() before fit() or load_state_dict()")
        z = self.inputs(features, self.name).double().numpy()
        return {ATTRIBUTE: ((z @ self.coef + self.bias) > 0).astype(np.int64)}

    def state_dict(self) -> dict[str, Any]:
        if self.coef is None:
            raise RuntimeError(f"{self.name}: state_dict() before fit() or load_state_dict()")
        return {"config": self.config(), "inputs": self.inputs.state_dict(), "coef": torch.from_numpy(self.coef),
                "bias": self.bias}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.inputs = Standardiser.from_state(state["inputs"])
        self.coef = np.asarray(state["coef"], dtype=np.float64)
        self.bias = float(state["bias"])

    def describe(self) -> dict[str, Any]:
        return {"classifier": "binary logistic regression (L2, balanced class weights, L-BFGS)",
                "inputs": "D values (embeddings) or 32·D bits (bit-patterns), standardised on the auxiliary split",
                "params_total": "D + 1 (or 32·D + 1)", "attribute": ATTRIBUTE}
