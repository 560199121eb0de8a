"""Gradient-inversion family (issue 17): victims, gradient releases, gradient defenses, batched attacks, matching.

The modules are pure functions and small classes on (model, images, labels); `plugins` registers the release kind
`fl-gradients`, the white-box extractor `fedsgd-lenet-zhu`, the attacks and the gradient defenses with the engine.
"""
