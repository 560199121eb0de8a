"""The metrics a run scores when `--metrics` is not given: what the attack leaks, read from plugin declarations.

One rule, in one place, driven by what plugins declare (never by their names):

- an attack whose outputs are images gets every standard image convention (`IMAGE_METRICS`; a metric whose
  weights or packages are missing is listed as unavailable with its fix, costing nothing);
- a face reconstruction, i.e. an image attack that declares `reconstructs_faces` or any image attack on a dataset
  that declares `faces`, also gets identity leakage (`IDENTITY_METRICS`), the finding its papers report;
- a dataset that declares `not_faces` (its images are not faces, e.g. CIFAR) drops the face-descriptor metrics
  (`FACE_IMAGE_METRICS`) from that list: a distance between dlib face descriptors of objects means nothing;
- an attack whose outputs are attributes gets the registered metrics that declare one of its `attributes`
  (`Metric.attribute`, e.g. `inferred-gender-accuracy` scores "gender"), and no image metric;
- an image attack that also declares `attributes` (gradient inversion recovers each image's class label) gets, after
  its image metrics, the registered metrics that score those attributes (`label-accuracy` scores "label").

The lists themselves are the `default` column of the convention table (bench/metric_conventions.py), the one place
they are written. `bench run --help` (built from that table), README.md and docs/metrics.md describe this rule;
tests/test_metric_defaults.py checks the README against these tuples.
"""

from __future__ import annotations

from bench import metric_conventions, registry
from bench.errors import BenchError
from bench.plugins import Attack, Dataset

# The default lists, in the order of the convention table (bench/metric_conventions.py, each row's `default`).
# Every standard image convention; `--metrics all` adds every other registered metric.
IMAGE_METRICS: tuple[str, ...] = metric_conventions.names(metric_conventions.IMAGE, metric_conventions.FACE_IMAGE)
# Image metrics computed on face descriptors: not scored by default on datasets that declare `not_faces`.
FACE_IMAGE_METRICS: tuple[str, ...] = metric_conventions.names(metric_conventions.FACE_IMAGE)
# Identity leakage as a face recognition system judges it (dlib face descriptors).
IDENTITY_METRICS: tuple[str, ...] = metric_conventions.names(metric_conventions.IDENTITY)


def reconstructs_faces(attack_cls: type[Attack], dataset_cls: type[Dataset]) -> bool:
    """Whether a run is a face reconstruction: an image attack that declares it, or one on a face dataset."""
    return attack_cls.outputs == "images" and (attack_cls.reconstructs_faces or dataset_cls.faces)


def attribute_metrics(attack_cls: type[Attack]) -> tuple[str, ...]:
    """The registered metrics that score one of the attributes `attack_cls` predicts, sorted by name."""
    wanted = set(attack_cls.attributes)
    return tuple(e.name for e in registry.metrics
                 if getattr(e.obj, "inputs", None) == "attributes" and getattr(e.obj, "attribute", None) in wanted)


def default_metrics(attack_cls: type[Attack], dataset_cls: type[Dataset]) -> tuple[str, ...]:
    """The metric names a run of `attack_cls` on `dataset_cls` scores by default (see the module's rule)."""
    if attack_cls.outputs == "attributes":
        names = attribute_metrics(attack_cls)
        if not names:
            raise BenchError(f"attack {attack_cls.name!r} predicts {', '.join(attack_cls.attributes) or 'no attribute'}"
                             " but no registered metric scores it; name metrics with --metrics")
        return names
    beside = attribute_metrics(attack_cls)  # an image attack that also predicts attributes (gradient inversion)
    if reconstructs_faces(attack_cls, dataset_cls):
        return IMAGE_METRICS + IDENTITY_METRICS + beside
    if dataset_cls.not_faces:
        return tuple(m for m in IMAGE_METRICS if m not in FACE_IMAGE_METRICS) + beside
    return IMAGE_METRICS + beside


__all__ = ["IMAGE_METRICS", "FACE_IMAGE_METRICS", "IDENTITY_METRICS", "attribute_metrics", "default_metrics", "reconstructs_faces"]
