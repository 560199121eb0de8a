"""The feature kinds `fl-gradients` (fedSGD: a federated client's gradient) and `fl-updates` (FedAvg: its weight
change after local steps): one flattened tensor per record with the private images it covers."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from bench.attacks.gradinv import utility as gu
from bench.features import FeatureSet, register_feature_kind
from bench.plugins import UtilityContext


@register_feature_kind
class GradientRelease(FeatureSet):
    """A federated client's release: per record, the flattened gradient of the victim's loss over the images the
    record covers (fedSGD); labels stay beside the images, never inside the release."""

    kind = "fl-gradients"
    granularity = "batch"
    undefended_utility_source = "training"  # `none`'s figure: the victim trained by plain fedSGD

    @classmethod
    def undefended_utility(cls, ctx: UtilityContext) -> dict[str, float]:
        """``fl-accuracy`` of the undefended baseline: every training step's gradient released as computed."""
        return gu.fl_accuracy(ctx, gu.plain_step)

    def __init__(self, grads: np.ndarray, cover: list[list[int]], flags: Any = None, meta: Any = None) -> None:
        super().__init__(flags, meta)
        self.grads = np.asarray(grads, dtype=np.float32)
        self.cover = [[int(i) for i in c] for c in cover]

    def __len__(self) -> int:
        return len(self.grads)

    def covers(self) -> list[list[int]]:
        return [list(c) for c in self.cover]

    def subset(self, indices: Sequence[int]) -> "GradientRelease":
        return type(self)(self.grads[list(indices)], [self.cover[i] for i in indices], self.flags, self.meta)

    def _save_arrays(self) -> dict[str, np.ndarray]:
        return {"grads": self.grads, "cover_flat": np.array([i for c in self.cover for i in c], dtype=np.int64),
                "cover_sizes": np.array([len(c) for c in self.cover], dtype=np.int64)}

    @classmethod
    def _from_arrays(cls, arrays: Mapping[str, np.ndarray], flags: Any, meta: Any) -> "GradientRelease":
        flat, sizes = arrays["cover_flat"].tolist(), arrays["cover_sizes"].tolist()
        starts = np.cumsum([0] + sizes[:-1]).tolist()
        return cls(np.array(arrays["grads"]), [flat[s:s + n] for s, n in zip(starts, sizes)], flags, meta)


@register_feature_kind
class UpdateRelease(GradientRelease):
    """A FedAvg client's release: per record, the flattened weight change w0 - wT after its local SGD steps on the
    images the record covers (`grads` holds the update; the meta names the local steps, lr and mini-batch)."""

    kind = "fl-updates"
    # `none`'s baseline fl-accuracy is fedSGD training (GradientRelease's); FedAvg training has none wired yet, so
    # no figure rather than one that describes another protocol.
    undefended_utility_source = None
