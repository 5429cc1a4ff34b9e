"""Optimisers: SGD, Adam, AdamW and LARS, built from a name and the usual hyperparameters."""

from __future__ import annotations

from typing import Iterable

import torch

from ccli.errors import BadInput

OPTIMIZERS = ("sgd", "adam", "adamw", "lars")


class LARS(torch.optim.Optimizer):
    """LARS (You et al. 2017) as SimCLR uses it: SGD with momentum whose per-layer step is scaled by
    the trust ratio η·‖w‖ / (‖∇w‖ + wd·‖w‖). Param groups with `lars_exclude=True` (biases and BN
    parameters, by `param_groups`) get neither the trust ratio nor weight decay.
    """

    def __init__(self, params, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, eps: float = 1e-8):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=trust_coefficient,
                        eps=eps, lars_exclude=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if not group["lars_exclude"]:
                    if group["weight_decay"]:
                        grad = grad.add(p, alpha=group["weight_decay"])
                    w_norm = torch.linalg.vector_norm(p)
                    g_norm = torch.linalg.vector_norm(grad)
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0),
                        group["trust_coefficient"] * w_norm / (g_norm + group["eps"]),
                        torch.ones_like(w_norm),
                    )
                    grad = grad.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = grad.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def param_groups(modules_or_params: Iterable, exclude_1d: bool) -> list[dict]:
    """Trainable parameters in one group, or two when 1-d ones (biases, BN) are excluded from decay/LARS."""
    params = [p for p in modules_or_params if p.requires_grad]
    if not exclude_1d:
        return [{"params": params}]
    regular = [p for p in params if p.ndim > 1]
    flat = [p for p in params if p.ndim <= 1]
    groups = [{"params": regular}]
    if flat:
        groups.append({"params": flat, "weight_decay": 0.0, "lars_exclude": True})
    return groups


def build_optimizer(name: str, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
                    betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """`params` is an iterable of tensors or of param-group dicts."""
    name = name.lower()
    params = list(params)
    if params and isinstance(params[0], torch.Tensor):
        params = param_groups(params, exclude_1d=name == "lars")
    if name == "sgd":
        return torch.optim.SGD([{k: v for k, v in g.items() if k != "lars_exclude"} for g in params], lr=lr,
                               momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam([{k: v for k, v in g.items() if k != "lars_exclude"} for g in params], lr=lr,
                                betas=betas, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW([{k: v for k, v in g.items() if k != "lars_exclude"} for g in params], lr=lr,
                                 betas=betas, weight_decay=weight_decay)
    if name == "lars":
        return LARS(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise BadInput(f"optimizer '{name}' is unknown (available: {', '.join(OPTIMIZERS)}).")
