"""Built-in attacks: one package per attack family, one module per attack; each registers itself on import."""

from bench.attacks import mean_image  # noqa: F401  (registers "mean-image", the trivial floor)
from bench.attacks import sift_inversion  # noqa: F401  (registers the SIFT-inversion family: "cfgan", ...)
from bench.attacks import embedding_inversion  # noqa: F401  (registers "face-cnn", "attribute-inference")
from bench.attacks import feature_inversion  # noqa: F401  (registers "feature-decoder", "feature-gan")
from bench.attacks.gradinv import plugins  # noqa: F401  (registers "dlg", "idlg", "inverting-gradients", "fl-gradients")
