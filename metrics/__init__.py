"""Built-in metrics; importing this package registers them (pixel metrics and SSIM)."""

from bench.metrics import pixel, ssim  # noqa: F401  (imported for their registering side effect)
from bench.metrics import lpips  # noqa: F401,E402  (LPIPS variants; weights load lazily in prepare)
from bench.metrics import distribution  # noqa: F401,E402  (fid, kid, fd-dlib: set metrics on shared embedders)
from bench.metrics import semsim  # noqa: F401,E402  (SemSim; its checkpoint comes from `bench semsim train`)
from bench.metrics import identity  # noqa: F401,E402  (id-cosine, rsr@fmr=…, gender-accuracy: dlib-face identity leakage)
from bench.metrics import attributes  # noqa: F401,E402  (inferred-gender-accuracy: scores attribute attacks)
from bench.metrics import class_labels  # noqa: F401,E402  (label-accuracy: class labels recovered beside images)
