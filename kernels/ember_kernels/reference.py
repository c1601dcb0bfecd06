"""Pure-torch twins of the ``ember`` ops, with the same signatures as ``ember_kernels.ops``.

They define what the ops compute: the tests hold the ops to them (bit-exact for collation,
to float tolerance for the fusion head), the benchmark times against them, and being plain
tensor code without Python loops over rows, they trace (ONNX export) and run on any device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["collate_text", "collate_images", "fusion_mlp"]


def _truncate_pair(la: Tensor, lb: Tensor, budget: int) -> tuple[Tensor, Tensor]:
    """Longest-first truncation as HF tokenizers do it, per row: the shorter side keeps up
    to half the budget (the first side on ties), the longer side gets the rest."""
    half = budget // 2
    a_shorter = la <= lb
    na_if_a_shorter = la.clamp(max=half)
    nb_if_b_shorter = lb.clamp(max=half)
    na = torch.where(a_shorter, na_if_a_shorter, torch.minimum(la, budget - nb_if_b_shorter))
    nb = torch.where(a_shorter, torch.minimum(lb, budget - na_if_a_shorter), nb_if_b_shorter)
    fits = la + lb <= budget
    return torch.where(fits, la, na), torch.where(fits, lb, nb)


def collate_text(
    ids_a: Tensor,
    offsets_a: Tensor,
    rows: Tensor,
    *,
    ids_b: Tensor | None = None,
    offsets_b: Tensor | None = None,
    cls_id: int,
    sep_id: int,
    pad_id: int,
    max_len: int,
    pad_multiple: int = 8,
) -> tuple[Tensor, Tensor, Tensor]:
    """See ``ember_kernels.ops.collate_text``."""
    pair = ids_b is not None
    start_a = offsets_a[rows]
    la = offsets_a[rows + 1] - start_a
    if pair:
        start_b = offsets_b[rows]
        lb = offsets_b[rows + 1] - start_b
        la, lb = _truncate_pair(la, lb, max_len - 3)
        total = la + lb + 3
    else:
        la = la.clamp(max=max_len - 2)
        total = la + 2
    longest = int(total.max())
    width = min(max_len, -(-longest // pad_multiple) * pad_multiple)
    j = torch.arange(width, device=rows.device)[None, :]
    la_, total_ = la[:, None], total[:, None]

    def gather(ids: Tensor, start: Tensor, first: Tensor, inside: Tensor) -> Tensor:
        # ids[start + j - first] where inside, any valid index elsewhere
        padded = torch.cat([ids, ids.new_zeros(1)])
        idx = torch.where(inside, start[:, None] + j - first, len(ids))
        return padded[idx]

    in_a = (j >= 1) & (j <= la_)
    input_ids = torch.where(in_a, gather(ids_a, start_a, torch.ones_like(la_), in_a), pad_id)
    input_ids = torch.where(j == 0, cls_id, input_ids)
    input_ids = torch.where(j == la_ + 1, sep_id, input_ids)
    types = torch.zeros_like(input_ids)
    if pair:
        lb_ = lb[:, None]
        in_b = (j >= la_ + 2) & (j <= la_ + 1 + lb_)
        input_ids = torch.where(in_b, gather(ids_b, start_b, la_ + 2, in_b), input_ids)
        input_ids = torch.where(j == la_ + lb_ + 2, sep_id, input_ids)
        types = ((j >= la_ + 2) & (j < total_)).to(torch.int64)
    mask = (j < total_).to(torch.int64)
    return input_ids, mask, types


def collate_images(images: Tensor, mean: Tensor, std: Tensor, flip: Tensor | None = None) -> Tensor:
    """See ``ember_kernels.ops.collate_images``."""
    x = images.permute(0, 3, 1, 2).float()
    if flip is not None:
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def fusion_mlp(
    features: Sequence[Tensor],
    adapter_weights: Sequence[Tensor],
    adapter_biases: Sequence[Tensor],
    norm_weights: Sequence[Tensor],
    norm_biases: Sequence[Tensor],
    fc_weights: Sequence[Tensor],
    fc_biases: Sequence[Tensor],
    head_weight: Tensor,
    head_bias: Tensor,
    dropout_scales: Sequence[Tensor] = (),
    *,
    eps: float = 1e-5,
    negative_slope: float = 0.01,
) -> Tensor:
    """See ``ember_kernels.ops.fusion_mlp``: the eager computation, concatenation included."""
    x = torch.cat([F.linear(f, w, b) for f, w, b in zip(features, adapter_weights, adapter_biases)], -1)
    for i, (nw, nb, fw, fb) in enumerate(zip(norm_weights, norm_biases, fc_weights, fc_biases)):
        x = F.leaky_relu(F.linear(F.layer_norm(x, (x.shape[-1],), nw, nb, eps), fw, fb), negative_slope)
        if dropout_scales:
            x = x * dropout_scales[i]
    return F.linear(x, head_weight, head_bias)
