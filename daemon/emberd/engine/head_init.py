"""Start a new head where a linear probe would end: fit it exactly on frozen features.

A new model's linear head is fitted by L-BFGS (cross-entropy or squared error, with a
small L2 penalty) on the backbones' features of up to ``rows`` training rows, before any
fine-tuning step. One forward pass buys what many SGD steps of linear probing would, so
fine-tuning starts from an aligned head (LP-FT, Kumar et al. 2022) even under a 60 s
budget. Applies when the head is one Linear layer (a single modality); a fusion MLP is
trained by the ordinary linear-probe phase instead."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from .features import Collator, Encoded, LengthBuckets

# How much slower a forward pass in the model's own precision is than the probe's in the fast
# dtype, at most (MiniLM on an AVX512-BF16 CPU: 1.65x): scales the probe's time into what
# a validation costs (``forward_s_per_row``), erring towards more.
FAST_DTYPE_SPEEDUP = 2.0


def _fast_dtype(device: torch.device) -> torch.dtype | None:
    """bfloat16 where the hardware multiplies it natively (oneDNN on AVX512-BF16/AMX CPUs,
    Ampere+ GPUs): the probe's forward pass runs ~1.7x faster and the probe only needs
    features to three digits; fine-tuning itself stays in the model's own precision."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported() else None


@torch.no_grad()
def _features(net: nn.Module, collator: Collator, rows: np.ndarray, lengths: np.ndarray, batch_size: int) -> torch.Tensor:
    out = []
    order = []
    device = next(net.parameters()).device
    dtype = _fast_dtype(device)
    for batch in LengthBuckets(lengths[rows], batch_size, shuffle=False):
        idx = rows[batch]
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out.append(torch.cat(net.features(collator(idx.tolist())), -1).float())
        order.append(idx)
    feats = torch.cat(out)
    perm = np.argsort(np.concatenate(order))
    return feats[torch.as_tensor(perm)]


def _fit(x: torch.Tensor, y: torch.Tensor, w0: torch.Tensor, b0: torch.Tensor, regression: bool, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-penalized least squares or multinomial logistic regression, by L-BFGS."""
    w = w0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)

    def objective() -> torch.Tensor:
        return _loss(x, y, w, b, regression) + 0.5 * l2 * (w * w).sum()

    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=100, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def _loss(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor, regression: bool) -> torch.Tensor:
    out = x @ w.T + b
    return nn.functional.mse_loss(out[:, 0], y.float()) if regression else nn.functional.cross_entropy(out, y)


def fit_linear_head(
    net: nn.Module,
    enc: Encoded,
    collator: Collator,
    lengths: np.ndarray,
    *,
    regression: bool,
    rows: int,
    batch_size: int,
    seed: int = 0,
    penalties: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0),
) -> dict[str, float]:
    """Fit ``net.head``'s Linear in place. The L2 penalty is chosen on a fifth of the probe
    rows held out (features outnumber rows easily: unpenalized, the probe memorizes), then
    the head is refitted on all of them. Returns the probe's numbers, among them
    ``forward_s_per_row``: what one row's forward pass in the model's own precision costs,
    from the probe's (a validation's cost, known before any validation ran)."""
    linear = net.head[-1]
    assert isinstance(linear, nn.Linear)
    take = np.sort(np.random.default_rng(seed).permutation(enc.n)[: min(rows, enc.n)])
    was_training = net.training
    net.eval()
    fast = _fast_dtype(next(net.parameters()).device) is not None
    t0 = time.monotonic()
    try:
        x = _features(net, collator, take, lengths, batch_size).float()
    finally:
        net.train(was_training)
    t1 = time.monotonic()
    y = enc.labels[torch.as_tensor(take)]
    w0, b0 = linear.weight.detach(), linear.bias.detach()
    cut = max(1, len(take) // 5)
    held, solved = {}, {}
    w, b = w0, b0
    for l2 in sorted(penalties, reverse=True):  # strongest first: each solution starts the next
        w, b = solved[l2] = _fit(x[cut:], y[cut:], w, b, regression, l2)
        with torch.no_grad():
            held[l2] = float(_loss(x[:cut], y[:cut], w, b, regression))
    best = min(held, key=held.get)
    w, b = _fit(x, y, *solved[best], regression, best)
    with torch.no_grad():
        before = float(_loss(x[:cut], y[:cut], w0, b0, regression))
        linear.weight.copy_(w)
        linear.bias.copy_(b)
    t2 = time.monotonic()
    return {
        "rows": len(take), "l2": best, "heldout_loss_before": before, "heldout_loss": held[best],
        "features_s": round(t1 - t0, 3), "fit_s": round(t2 - t1, 3),
        "forward_s_per_row": (t1 - t0) / len(take) * (FAST_DTYPE_SPEEDUP if fast else 1.0),
    }
