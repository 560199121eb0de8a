"""What a federated client releases: gradients of one image or a batch (fedSGD) and a FedAvg weight update.

Pure functions on (model, images, labels) -> list of tensors in `model.parameters()` order. Labels are integer
class indices or soft label distributions (rows summing to 1; the attacks' dummy labels). The model's mode is left
as given: with BatchNorm in train mode a batch release couples its images through the batch statistics.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, grad, vmap


def soft_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy for integer labels, or against label distributions (DLG's soft dummy labels)."""
    if labels.dtype in (torch.int64, torch.int32):
        return nn.functional.cross_entropy(logits, labels)
    return -(labels * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


def batch_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   create_graph: bool = False) -> list[torch.Tensor]:
    """fedSGD release: gradient of the batch's mean loss w.r.t. every parameter (B = 1 is the one-image release)."""
    params = [p for p in model.parameters() if p.requires_grad]
    loss = soft_cross_entropy(model(images), labels)
    grads = torch.autograd.grad(loss, params, create_graph=create_graph)
    return list(grads) if create_graph else [g.detach() for g in grads]


def image_gradient(model: nn.Module, image: torch.Tensor, label: torch.Tensor | int) -> list[torch.Tensor]:
    """fedSGD release of a single image (C, H, W) with its integer label."""
    lab = torch.as_tensor([int(label)]) if not torch.is_tensor(label) or label.ndim == 0 else label
    return batch_gradient(model, image[None], lab)


def fedavg_update(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, local_steps: int = 5,
                  lr: float = 1e-4, local_batch: int | None = None) -> list[torch.Tensor]:
    """FedAvg release: the weight change w0 - wT after `local_steps` plain SGD steps at `lr` on the client's data.

    Mini-batches cycle through the data in order (`local_batch` images each; all of them when None). The model
    passed in is not modified. For one step on the whole batch the release equals lr x the fedSGD gradient.
    """
    local = copy.deepcopy(model)
    params = [p for p in local.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    b = local_batch or len(images)
    n_batches = max(1, (len(images) + b - 1) // b)
    for step in range(local_steps):
        i = (step % n_batches) * b
        loss = soft_cross_entropy(local(images[i:i + b]), labels[i:i + b])
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= lr * g
    return [s - p.detach() for s, p in zip(start, params)]


def per_sample_gradients(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    """Many independent batch-1 releases in one call: torch.func.vmap over grad of a functional_call.

    Returns one tensor per parameter with a leading dimension of len(images); entry i is image_gradient(i).
    BatchNorm must be in eval mode (a batch of one has no batch statistics to vmap over).
    """
    if model.training and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ValueError("per_sample_gradients: put the model in eval mode (BatchNorm in train mode couples samples)")
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def loss_one(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return soft_cross_entropy(functional_call(model, (p, buffers), (x[None],)), y[None])

    out = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, images, labels)
    return [out[n] for n in names]
