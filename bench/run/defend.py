"""The defend stage: what each split releases under the run's defense, client-side defenses included.

A defense on the release (`protect`) transforms extracted features. A client-side defense (`Defense.client_side`:
DP-SGD, ATSPrivacy's augmentation) acts before the release, so it receives the split's images and the white-box
victim (`ClientData`) and returns the release the client makes under it. The victim protects with its keys
('victim-keys'); the attacker simulates the defense on its own split with keys of its own ('attacker-keys'), or
queries the victim's protected API (`attacker_training_features`).
"""

from __future__ import annotations

import copy

from bench.errors import BenchError
from bench.features import FeatureSet
from bench.plugins import ClientData, Dataset, Victim, attacker_training_features, seeded_rng
from bench.run.plan import Plan
from bench.run.stages import SplitFeatures, load_split


def client_victim(p: Plan) -> Victim:
    """A copy of the white-box victim at the run's extraction size (plan checked that the extractor grants one)."""
    p.extractor.extract_size = p.spec.extract_size
    own = p.extractor.victim()
    return Victim(model=copy.deepcopy(own.model).eval(), state=copy.deepcopy(dict(own.state)))


def _client(p: Plan, ds: Dataset, split: SplitFeatures, what: str, victim: Victim, n_train: int) -> ClientData:
    images = load_split(ds, split.ids, p.spec.extract_size, what)
    if list(images.ids) != list(split.ids):
        raise BenchError(f"the {what} split's images changed since its features were extracted (ids differ); "
                         "run again to re-extract")
    return ClientData(images=images, victim=victim, profile=p.profile.name, n_train=n_train)


def defended_releases(p: Plan, private: SplitFeatures, aux: SplitFeatures) -> tuple[FeatureSet, FeatureSet]:
    """(the private split's release, the auxiliary split's release as the attacker gets it) under `p.defense`."""
    seed = p.spec.seed
    if not type(p.attack).uses_auxiliary:  # the attacker's split is not used: nothing of it is released
        return _private_release(p, private, seed), aux.features
    if not p.defense.client_side:
        return (p.defense.protect(private.features, seeded_rng(seed, "victim-keys")),
                attacker_training_features(p.defense, aux.features, seed))
    victim = client_victim(p)
    n_train = len(aux.ids)
    released = p.defense.protect_client(private.features, _client(p, p.dataset, private, "private", victim, n_train),
                                        seeded_rng(seed, "victim-keys"))
    aux_released = p.defense.protect_client(aux.features,
                                            _client(p, p.aux_dataset, aux, "auxiliary", victim, n_train),
                                            seeded_rng(seed, "attacker-keys"))
    return released, aux_released


def _private_release(p: Plan, private: SplitFeatures, seed: int) -> FeatureSet:
    """The private split's release alone (the attacker's split unused); a client-side defense learns the train
    split's size from the plan."""
    if not p.defense.client_side:
        return p.defense.protect(private.features, seeded_rng(seed, "victim-keys"))
    victim = client_victim(p)
    return p.defense.protect_client(private.features,
                                    _client(p, p.dataset, private, "private", victim, len(p.train_ids)),
                                    seeded_rng(seed, "victim-keys"))
