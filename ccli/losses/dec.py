"""Deep Embedded Clustering's self-training terms and the autoencoder reconstruction loss.

DEC (Xie et al., ICML 2016) soft-assigns embeddings to K centres with a Student's t kernel
(DEC Eq. 1), sharpens those assignments into a target distribution (DEC Eq. 3) and pulls the
assignments towards it with KL(P‖Q) (DEC Eq. 2). IDEC (Guo et al., IJCAI 2017) adds the
autoencoder's reconstruction loss so the embedding keeps the input's information. The spec
(cctc-and-cdec.md §17.2, losses 3 and 4) writes all four for cdec; the numbers below cite it.

All functions are pure and compute in at least float32 (autocast inputs are promoted).
"""

from __future__ import annotations

import torch

from ccli.losses.cluster import at_least_float32


def student_t_log_assignment(e: torch.Tensor, centers: torch.Tensor, nu: float = 1.0) -> torch.Tensor:
    """log q_ik of spec §17.2 loss 4 / DEC Eq. 1, [B, K]: log-softmax_k of −(ν+1)/2 · log(1 + ‖e_i − μ_k‖²/ν).

    The kernel is normalised in log space, so far-away centres never underflow to log 0.
    """
    e, centers = at_least_float32(e), at_least_float32(centers).to(at_least_float32(e).dtype)
    sq = (e.unsqueeze(1) - centers.unsqueeze(0)).pow(2).sum(-1)  # ‖e_i − μ_k‖², exact (no cancellation)
    log_kernel = -(nu + 1.0) / 2.0 * torch.log1p(sq / nu)
    return torch.log_softmax(log_kernel, dim=1)


def student_t_assignment(e: torch.Tensor, centers: torch.Tensor, nu: float = 1.0) -> torch.Tensor:
    """q_ik of spec §17.2 loss 4 / DEC Eq. 1: (1 + ‖e_i − μ_k‖²/ν)^(−(ν+1)/2), normalised over k (rows sum to 1)."""
    return student_t_log_assignment(e, centers, nu).exp()


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """p_ik of spec §17.2 loss 4 / DEC Eq. 3: (q_ik² / f_k) / Σ_k' (q_ik'² / f_k'), f_k = Σ_i q_ik over all rows of q.

    q must hold the whole dataset's assignments (f_k are cluster frequencies); the result is
    detached: P is a fixed target between refreshes.
    """
    q = at_least_float32(q.detach())
    weight = q.pow(2) / q.sum(0, keepdim=True).clamp_min(torch.finfo(q.dtype).tiny)
    return weight / weight.sum(1, keepdim=True)


def kl_target_loss(p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """L_KL of spec §17.2 loss 4 / DEC Eq. 2: (1/B) Σ_i Σ_k p_ik log(p_ik / q_ik), with 0 log 0 = 0.

    Takes log q (student_t_log_assignment) so the gradient stays finite where q_ik is tiny.
    """
    p = at_least_float32(p).to(log_q.dtype)
    return (torch.special.xlogy(p, p) - p * log_q).sum(1).mean()


def reconstruction_loss(reconstructions, targets) -> torch.Tensor:
    """L_rec of spec §17.2 loss 3: (1/(VB)) Σ_v Σ_i (1/D) ‖g_D(e_i^(v)) − x_i^(v)‖², D = C·H·W, over V views.

    `reconstructions` and `targets` are lists of [B, C, H, W] tensors (one per view; a single
    tensor is one view). Every view has the same B and D, so this is the mean squared error
    over all of them.
    """
    if isinstance(reconstructions, torch.Tensor):
        reconstructions, targets = [reconstructions], [targets]
    if len(reconstructions) != len(targets) or not reconstructions:
        raise ValueError("reconstruction_loss needs one target per reconstruction")
    losses = []
    for xhat, x in zip(reconstructions, targets):
        if xhat.shape != x.shape:
            raise ValueError(f"reconstruction of shape {tuple(xhat.shape)} for a target of shape {tuple(x.shape)}")
        losses.append((at_least_float32(xhat) - at_least_float32(x).detach()).pow(2).mean())
    return torch.stack(losses).mean()
