"""The attack passes leakbench's contract test kit, and learns something a floor does not."""

import numpy as np
import torch

from bench.contract import check_plugin, smoke_data
from bench.plugins import FitContext


def test_ridge_keypoints_passes_the_contract_kit() -> None:
    results = check_plugin("ridge-keypoints", "attacks")
    failed = [(check, detail) for check, ok, detail in results if not ok]
    assert results and not failed, failed


def test_ridge_fits_its_training_set_better_than_the_mean_image() -> None:
    from leakbench_example_attack import RidgeKeypoints

    data = smoke_data(n_train=12, n_test=4)
    size = data["profile"].image_size
    attack = RidgeKeypoints(profile="smoke", image_size=size, params={"alpha": 1e-3})
    attack.fit(data["aux"], data["aux_images"], FitContext(defense=data["defense"], seed=0,
                                                            device=torch.device("cpu"), progress=False))
    fitted = attack.reconstruct(data["aux"], progress=False)
    mean = data["aux_images"].mean(dim=0, keepdim=True)
    err = float(((fitted - data["aux_images"]) ** 2).mean())
    floor = float(((mean - data["aux_images"]) ** 2).mean())
    assert np.isfinite(err) and err < floor  # with more features than images, a small ridge nearly interpolates
