"""leakbench-example-attack: the outside attack `ridge-keypoints` (an example of a submitted plugin)."""

from leakbench_example_attack.plugin import RidgeKeypoints  # noqa: F401
