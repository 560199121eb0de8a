"""Gradient-inversion family (issue 17): victims, gradient releases, gradient defenses, attacks and matching.

The modules here are pure functions and small classes on (model, images, labels); they do not register plugins with
the engine yet (that needs the CIFAR datasets, the victim handle and per-batch releases of the engine issue).
"""
