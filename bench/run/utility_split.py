"""The evaluation split on which utilities that are accuracies (a gradient defense's ``fl-accuracy``, the white-box
victim's ``victim-accuracy``) are measured: images of the private dataset's test split that are never the run's
private (scored) images, nor any image of the attacker/train split.

Why: the private split is a handful of images (4 per run in the SemSim grid), so an accuracy on it says nothing (every
row of the first SemSim leaderboard read 0.125 / 0.5). The split is drawn deterministically: the test split ordered
by the same seeded hash of each image's content key that drew the private images (bench/run/splits.py), the private
images being its first `n_test`; the evaluation split is the next images of that order (copies of a private or
train image left out), up to the profile's declared size. Disjoint from the private split by construction.

The convention (`CONVENTION`, versioned) is stored with each such utility value (the store's `detail`) and in
run.json; `bench grid` started again recomputes a finished run's utility whose stored convention is another one
(bench/run/grid.py), without re-running the attack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.errors import BenchError
from bench.hashing import digest
from bench.run.splits import _rank

# Images of the evaluation split per run profile (None: the whole test split less the private images). smoke: tests;
# cpu: 1,000 (a 95 % interval of about +-3 points at 30 % accuracy); paper: the whole test split (CIFAR: ~10,000).
EVAL_IMAGES: dict[str, int | None] = {"smoke": 16, "cpu": 1000, "paper": None}

# Version tag of the convention: a stored utility whose detail does not start with it is measured again.
TAG = "utility-eval/1"


@dataclass(frozen=True)
class EvaluationSplit:
    """The evaluation split of one run: its ids, the declared size and where it was drawn from."""

    ids: list[str]
    declared: int | None
    source: str  # e.g. "cifar10's test split"

    @property
    def convention(self) -> str:
        """What a utility measured on this split says about itself (stored with the value)."""
        want = "all" if self.declared is None else str(self.declared)
        return (f"{TAG}: top-1 accuracy on {len(self.ids)} images of {self.source} (declared {want}), drawn by the "
                "run seed's hash order after the private images, disjoint from the private and train splits")

    def record(self) -> dict[str, Any]:
        """run.json's `utility_evaluation`."""
        return {"convention": self.convention, "tag": TAG, "n": len(self.ids), "declared": self.declared,
                "source": self.source, "ids_digest": digest(list(self.ids), 32)}


def eval_size(profile: str) -> int | None:
    """The declared evaluation-split size at `profile` (an unknown profile is an error, never a default)."""
    if profile not in EVAL_IMAGES:
        raise BenchError(f"utility evaluation split: no size declared for profile {profile!r} "
                         f"(known: {', '.join(EVAL_IMAGES)})")
    return EVAL_IMAGES[profile]


def evaluation_split(p: Any) -> EvaluationSplit:
    """The evaluation split of plan `p` (bench.run.plan.Plan); a BenchError when no image is left for it."""
    from bench.run.plan import _key_of

    declared = eval_size(p.profile.name)
    ds = p.dataset
    official = ds.official_splits() if p.aux_dataset is ds else None
    if official is not None:
        pool, source = list(official["test"]), f"{p.spec.dataset}'s test split"
    else:
        pool = list(ds.item_ids())
        source = (f"{p.spec.dataset} (no official test split: its images outside the private and train splits)")
    everything = list(ds.item_ids())
    key = _key_of(ds, everything)
    ordered = sorted(pool, key=lambda i: (_rank(p.spec.seed, key(i)), i))
    private = set(p.test_ids)
    taken = {key(i) for i in p.test_ids}
    if p.aux_dataset is ds:
        taken |= {key(i) for i in p.train_ids}
    else:  # another dataset's train images: left out by id (a shared file keeps its id)
        private |= set(p.train_ids)
    ids: list[str] = []
    for i in ordered:
        if declared is not None and len(ids) == declared:
            break
        if i in private or key(i) in taken:
            continue
        taken.add(key(i))
        ids.append(i)
    if not ids:
        raise BenchError(f"utility evaluation split: no image of {source} is left once the run's {len(p.test_ids)} "
                         "private and train images are excluded; an accuracy on the private images alone is not "
                         "reported")
    return EvaluationSplit(ids, declared, source)
