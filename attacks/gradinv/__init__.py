"""Gradient-inversion family (issue 17): victims, gradient and FedAvg releases, gradient and client-side defenses,
batched attacks, the defenses' utility training.

The modules are pure functions and small classes on (model, images, labels); `plugins` registers the release kinds,
the white-box extractors (`fedsgd`, `fedsgd-lenet-zhu`, `fedavg`), the attacks and the defenses with the engine.
Pairing a batch's reconstructions with its originals is the engine's (`bench/matching.py`).
"""
