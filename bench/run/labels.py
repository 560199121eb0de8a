"""Whether the datasets of a run carry the labels an attribute attack needs, checked before any work.

An attribute attack trains on the auxiliary split's labels and is scored against the private split's. A dataset that
declares its labels (`Dataset.label_names`) without the attack's attributes makes the run pointless, so `plan`
refuses it with one line (an IncompatibleError, which a grid lists as a skipped pairing, like an attack that cannot
consume a defense's release). A dataset that declares nothing is left to the attack, which refuses when it trains.
"""

from __future__ import annotations

from bench import registry
from bench.errors import IncompatibleError
from bench.plugins import Attack, Dataset


def missing_labels(attack_cls: type[Attack], dataset_cls: type[Dataset]) -> list[str]:
    """The attributes `attack_cls` predicts that `dataset_cls` declares it has no labels for (none if undeclared)."""
    if attack_cls.outputs != "attributes" or dataset_cls.label_names is None:
        return []
    return [a for a in attack_cls.attributes if a not in dataset_cls.label_names]


def check_attribute_labels(attack_cls: type[Attack], datasets: dict[str, type[Dataset]]) -> None:
    """Raise IncompatibleError when a dataset of the run (role -> class) lacks a label the attack predicts."""
    for role, cls in datasets.items():
        missing = missing_labels(attack_cls, cls)
        if missing:
            has = ", ".join(cls.label_names or ()) or "none"
            fits = [f"--dataset {name}" + (" --data-root PATH" if registry.datasets.get(name).obj.needs_root else "")
                    for name in labelled_datasets(missing)]
            raise IncompatibleError(
                f"attack {attack_cls.name!r} infers {', '.join(missing)} but {role} dataset {cls.name!r} has no "
                f"{', '.join(missing)} labels (its labels: {has}); use a dataset with them"
                + (f": {' or '.join(fits)}" if fits else ""))


def labelled_datasets(attributes: list[str]) -> list[str]:
    """Registered datasets that declare labels for every one of `attributes`, sorted by name."""
    return [e.name for e in registry.datasets
            if getattr(e.obj, "label_names", None) is not None and set(attributes) <= set(e.obj.label_names)]


__all__ = ["check_attribute_labels", "labelled_datasets", "missing_labels"]
