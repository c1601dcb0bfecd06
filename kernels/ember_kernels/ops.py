"""Typed wrappers of the ``torch.ops.ember`` operators, their fake implementations (shapes
for torch.compile, export and ``opcheck``) and the fusion op's autograd.

Each wrapper has the same signature as its pure-torch twin in ``ember_kernels.reference``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["collate_text", "collate_images", "fusion_mlp"]


# ---- text -------------------------------------------------------------------------------
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
    """``input_ids``, ``attention_mask``, ``token_type_ids`` (int64, rows x width) of the
    given rows of one CSR column (``ids_a[offsets_a[r]:offsets_a[r+1]]``, no special tokens)
    or of a pair of columns: ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]`` with
    longest-first truncation to ``max_len``, padded to the longest row rounded up to
    ``pad_multiple`` (at most ``max_len``)."""
    return torch.ops.ember.collate_text.default(
        ids_a, offsets_a, ids_b, offsets_b, rows, cls_id, sep_id, pad_id, max_len, pad_multiple
    )


@torch.library.register_fake("ember::collate_text")
def _collate_text_fake(ids_a, offsets_a, ids_b, offsets_b, rows, cls_id, sep_id, pad_id, max_len, pad_multiple):
    torch._check(ids_a.dtype == torch.int64 and offsets_a.dtype == torch.int64 and rows.dtype == torch.int64)
    torch._check((ids_b is None) == (offsets_b is None))
    torch._check(rows.dim() == 1)
    # The width depends on the data (the batch's longest row): a dynamic size.
    width = torch.library.get_ctx().new_dynamic_size(min=2, max=max_len)
    n = rows.shape[0]
    return tuple(ids_a.new_empty((n, width)) for _ in range(3))


# ---- images -----------------------------------------------------------------------------
def collate_images(images: Tensor, mean: Tensor, std: Tensor, flip: Tensor | None = None) -> Tensor:
    """uint8 (N, H, W, C) images to a float32 (N, C, H, W) batch ``(x - mean[c]) / std[c]``
    (mean and std on the 0-255 scale), mirroring horizontally the images with ``flip[i]``."""
    return torch.ops.ember.collate_images.default(images, mean, std, flip)


@torch.library.register_fake("ember::collate_images")
def _collate_images_fake(images, mean, std, flip):
    torch._check(images.dtype == torch.uint8 and images.dim() == 4)
    n, h, w, c = images.shape
    return images.new_empty((n, c, h, w), dtype=torch.float32)


# ---- fusion head ------------------------------------------------------------------------
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
    """AutoGluon's fusion MLP on (batch, f_i) features: ``Linear(f_i -> w)`` adapters,
    concatenation, ``len(fc_weights)`` units of LayerNorm -> Linear -> LeakyReLU -> dropout,
    then the head Linear. ``dropout_scales``: empty (no dropout) or one (batch, hidden)
    tensor per unit holding 0 or 1/(1-p), as ``F.dropout`` of ones draws them.

    With gradients on, it runs through ``_FusionMLP`` rather than the op's registered
    autograd: the same two ops, but with the tensors passed flat, which saves the ~0.7 ms
    per step that the registered path spends flattening the op's lists (pytree)."""
    groups = [features, adapter_weights, adapter_biases, norm_weights, norm_biases, fc_weights, fc_biases]
    tensors = [t for g in groups for t in g] + [head_weight, head_bias]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        counts = (len(features), len(fc_weights), len(dropout_scales))
        return _FusionMLP.apply(counts, eps, negative_slope, *tensors, *dropout_scales)
    out, _ = torch.ops.ember.fusion_mlp.default(
        *[list(g) for g in groups], head_weight, head_bias, list(dropout_scales), eps, negative_slope, False
    )
    return out


@torch.library.register_fake("ember::fusion_mlp")
def _fusion_mlp_fake(features, adapter_weights, adapter_biases, norm_weights, norm_biases, fc_weights, fc_biases,
                     head_weight, head_bias, dropout_scales, eps, negative_slope, save):
    torch._check(len(features) >= 1 and len(adapter_weights) == len(features))
    x0 = features[0]
    batch = x0.shape[0]
    pieces = [x0.new_empty((batch, w.shape[0])) for w in adapter_weights]
    saved = []
    for fc_w in fc_weights:
        if save:  # per unit: input pieces, y (the normalized input, whole), mean, rstd, z
            saved += [torch.empty_like(p) for p in pieces]
            saved += [x0.new_empty((batch, sum(p.shape[1] for p in pieces)))]
            saved += [x0.new_empty((batch,)), x0.new_empty((batch,)), x0.new_empty((batch, fc_w.shape[0]))]
        pieces = [x0.new_empty((batch, fc_w.shape[0]))]
    if save:
        saved += pieces
    return x0.new_empty((batch, head_weight.shape[0])), saved


@torch.library.register_fake("ember::fusion_mlp_backward")
def _fusion_mlp_backward_fake(grad_out, features, adapter_weights, norm_weights, fc_weights, head_weight,
                              dropout_scales, saved, negative_slope, feature_grads):
    d_feat = [torch.empty_like(f) if need else f.new_empty((0,)) for f, need in zip(features, feature_grads)]
    return (
        d_feat,
        [torch.empty_like(w) for w in adapter_weights],
        [w.new_empty((w.shape[0],)) for w in adapter_weights],
        [torch.empty_like(w) for w in norm_weights],
        [torch.empty_like(w) for w in norm_weights],
        [torch.empty_like(w) for w in fc_weights],
        [w.new_empty((w.shape[0],)) for w in fc_weights],
        torch.empty_like(head_weight),
        head_weight.new_empty((head_weight.shape[0],)),
    )


# ---- the fusion op's autograd -----------------------------------------------------------
# Both paths below keep the same tensors (ctx.save_for_backward: features, adapter weights,
# norm weights, fc weights, head weight, dropout scales, then the op's saved activations) and
# share _fusion_grads.
def _keep_for_backward(ctx, features, adapter_weights, norm_weights, fc_weights, head_weight, scales, saved, slope):
    ctx.slope = slope
    ctx.counts = (len(features), len(fc_weights), len(scales))
    ctx.save_for_backward(*features, *adapter_weights, *norm_weights, *fc_weights, head_weight, *scales, *saved)


def _fusion_grads(ctx, grad_out, feature_grads):
    """The 9 gradient groups of fusion_mlp's differentiable inputs; None for the features
    whose feature_grads flag is off."""
    k, layers, n_scales = ctx.counts
    t = ctx.saved_tensors
    features, adapter_weights = t[:k], t[k : 2 * k]
    norm_weights, fc_weights = t[2 * k : 2 * k + layers], t[2 * k + layers : 2 * k + 2 * layers]
    head_weight = t[2 * k + 2 * layers]
    rest = t[2 * k + 2 * layers + 1 :]
    scales, saved = rest[:n_scales], rest[n_scales:]
    grads = torch.ops.ember.fusion_mlp_backward.default(
        grad_out, features, adapter_weights, norm_weights, fc_weights, head_weight, scales, saved, ctx.slope, feature_grads
    )
    d_feat = [g if need else None for g, need in zip(grads[0], feature_grads)]
    return (d_feat, *grads[1:])


class _FusionMLP(torch.autograd.Function):
    """fusion_mlp and its backward, with the tensors passed flat (see ``fusion_mlp``)."""

    @staticmethod
    def forward(ctx, counts, eps, slope, *flat):
        k, layers, n_scales = counts
        groups, i = [], 0
        for n in (k, k, k, layers, layers, layers, layers):
            groups.append(list(flat[i : i + n]))
            i += n
        head_weight, head_bias = flat[i], flat[i + 1]
        scales = list(flat[i + 2 : i + 2 + n_scales])
        out, saved = torch.ops.ember.fusion_mlp.default(*groups, head_weight, head_bias, scales, eps, slope, True)
        features, adapter_weights, _, norm_weights, _, fc_weights, _ = groups
        _keep_for_backward(ctx, features, adapter_weights, norm_weights, fc_weights, head_weight, scales, saved, slope)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        k, layers, n_scales = ctx.counts
        feature_grads = list(ctx.needs_input_grad[3 : 3 + k])
        d_feat, d_aw, d_ab, d_nw, d_nb, d_fw, d_fb, d_hw, d_hb = _fusion_grads(ctx, grad_out, feature_grads)
        return (None, None, None, *d_feat, *d_aw, *d_ab, *d_nw, *d_nb, *d_fw, *d_fb, d_hw, d_hb, *([None] * n_scales))


def _fusion_setup_context(ctx, inputs, output):
    (features, adapter_weights, _, norm_weights, _, fc_weights, _, head_weight, _, scales, _, slope, save) = inputs
    _, saved = output
    # The saved activations are outputs only so that they can be kept: no gradient flows
    # into them, and none is materialized for them (zeros the size of the activations).
    ctx.mark_non_differentiable(*saved)
    ctx.set_materialize_grads(False)
    ctx.save = save
    _keep_for_backward(ctx, features, adapter_weights, norm_weights, fc_weights, head_weight, scales, saved, slope)


def _fusion_backward(ctx, grad_out, _grad_saved):
    k, layers, n_scales = ctx.counts
    if grad_out is None:  # the output did not reach the loss
        return ([None] * k, [None] * k, [None] * k, [None] * layers, [None] * layers, [None] * layers, [None] * layers,
                None, None, [None] * n_scales, None, None, None)
    if not ctx.save:
        raise RuntimeError("ember::fusion_mlp ran with save=False and cannot backward; call ember_kernels.ops.fusion_mlp")
    feature_grads = [bool(x) for x in ctx.needs_input_grad[0]]
    grads = _fusion_grads(ctx, grad_out, feature_grads)
    return (*grads, [None] * n_scales, None, None, None)


torch.library.register_autograd("ember::fusion_mlp", _fusion_backward, setup_context=_fusion_setup_context)
