"""Attribute metrics: how well an attribute attack infers a private label from released features (no images).

- `inferred-gender-accuracy` (set): balanced accuracy (mean per-class recall over the classes present; unlabelled
  samples, label < 0, left out) of the gender an attribute attack predicts against the private split's gender
  labels. 0.5 is chance for two classes; higher means more soft-biometric leakage (the attacker's view). It scores
  predicted attributes only: for image attacks the runner records it as not applicable (`gender-accuracy` scores
  reconstructions instead).
"""

from __future__ import annotations

import numpy as np
import torch

from bench.metrics.identity import GENDER_FIX, balanced_accuracy
from bench import metric_conventions
from bench.plugins import EvalBatch, EvalContext, Metric, MetricUnavailable


class InferredGenderAccuracy(Metric):
    """Balanced accuracy of the gender an attribute attack infers from released features; 0.5 = chance."""

    name = "inferred-gender-accuracy"
    inputs = "attributes"
    attribute = "gender"
    level = "set"
    value_range = (0.0, 1.0)
    higher_is_better = True
    needs_reference = False
    convention = metric_conventions.text("inferred-gender-accuracy")

    def prepare(self, ctx: EvalContext) -> None:
        if "gender" not in ctx.labels:
            raise MetricUnavailable(GENDER_FIX)

    def embed(self, recon: torch.Tensor | None, ref: torch.Tensor, batch: EvalBatch) -> dict[str, np.ndarray]:
        return {"pred": np.asarray(batch.attributes["gender"], dtype=np.int64).reshape(-1),
                "true": np.asarray(batch.labels["gender"], dtype=np.int64).reshape(-1)}

    def aggregate(self, parts: dict[str, np.ndarray]) -> float:
        return balanced_accuracy(parts.get("true", np.zeros(0)), parts.get("pred", np.zeros(0)))


metric_conventions.register(__name__)  # the row `inferred-gender-accuracy` of the convention table
