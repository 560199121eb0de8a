"""Built-in datasets register themselves on import: the synthetic demo set and the folder-backed sets."""

from bench.datasets import cifar, folders, synthetic  # noqa: F401  (imported for their @register_dataset side effect)
