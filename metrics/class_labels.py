"""`label-accuracy`: how often an attack recovers each private image's class label (gradient inversion predicts the
label of every image it rebuilds; iDLG reads it off the logits layer's gradient, DLG optimises it jointly)."""

from __future__ import annotations

import numpy as np
import torch

from bench import metric_conventions
from bench.plugins import EvalBatch, EvalContext, Metric, MetricUnavailable

LABEL_FIX = "a dataset whose images carry class labels in a `label` field (e.g. --dataset cifar10)"


class LabelAccuracy(Metric):
    """Share of private images whose class label the attack predicted exactly (per image 1 or 0; the set value is
    the mean); it scores the predicted attribute "label" against the dataset's `label` field."""

    name = "label-accuracy"
    inputs = "attributes"
    attribute = "label"
    level = "sample"
    value_range = (0.0, 1.0)
    higher_is_better = True
    needs_reference = False
    convention = metric_conventions.text("label-accuracy")

    def prepare(self, ctx: EvalContext) -> None:
        if "label" not in ctx.labels:
            raise MetricUnavailable(LABEL_FIX)

    def score_batch(self, recon: torch.Tensor | None, ref: torch.Tensor, batch: EvalBatch) -> np.ndarray:
        pred = np.asarray(batch.attributes["label"], dtype=np.int64).reshape(-1)
        true = np.asarray(batch.labels["label"], dtype=np.int64).reshape(-1)
        return (pred == true).astype(np.float64)


metric_conventions.register(__name__)  # the row `label-accuracy` of the convention table
