"""ember_kernels: every op against its pure-torch reference (bit-exact for collation, 1e-5 for
the fusion head), ``torch.library.opcheck``, the tokenizer's own padding, and the engine
CUDA cases (marked gpu) skip without a GPU; the engine training the same with the ops as
with the references is in tests/service/test_kernel_training.py."""

import random

import pytest
import torch
from torch.library import opcheck

import ember_kernels
from ember_kernels import ops, reference
from emberd.engine import InvalidArgument
from emberd.engine.config import default_text_checkpoint
from emberd.engine.features import Collator, Encoded, SpecialTokens, TokenCSR, _collate_text_reference
from emberd.engine.models.fusion import FusionMLP

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]  # gpu: skipped without CUDA (tests/conftest.py)
SPECIAL = dict(cls_id=101, sep_id=102, pad_id=0)


# ---- helpers ----------------------------------------------------------------------------
def random_csr(n, max_tokens, gen):
    lengths = torch.randint(0, max_tokens + 1, (n,), generator=gen)
    offsets = torch.zeros(n + 1, dtype=torch.int64)
    torch.cumsum(lengths, 0, out=offsets[1:])
    ids = torch.randint(1000, 30000, (int(offsets[-1]),), generator=gen)
    return ids, offsets


def assert_same(got, want):
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert torch.equal(g.cpu(), w.cpu())


def init_linear(out_f, in_f, gen, dtype):
    bound = in_f ** -0.5
    w = (torch.rand(out_f, in_f, generator=gen, dtype=dtype) * 2 - 1) * bound
    b = (torch.rand(out_f, generator=gen, dtype=dtype) * 2 - 1) * bound
    return w, b


def fusion_args(gen, *, batch, in_features, hidden, layers, outputs, dropout=0.0, dtype=torch.float32, device="cpu"):
    """Random fusion-head arguments shaped as FusionMLP builds them (adapters to max(in))."""
    width = max(in_features)
    features = [torch.randn(batch, f, generator=gen, dtype=dtype) for f in in_features]
    adapters = [init_linear(width, f, gen, dtype) for f in in_features]
    norm_w, norm_b, fc_w, fc_b, scales = [], [], [], [], []
    d = width * len(in_features)
    for _ in range(layers):
        norm_w.append(1 + 0.1 * torch.randn(d, generator=gen, dtype=dtype))
        norm_b.append(0.1 * torch.randn(d, generator=gen, dtype=dtype))
        w, b = init_linear(hidden, d, gen, dtype)
        fc_w.append(w)
        fc_b.append(b)
        if dropout:
            keep = torch.rand(batch, hidden, generator=gen) >= dropout
            scales.append(keep.to(dtype) / (1 - dropout))
        d = hidden
    head_w, head_b = init_linear(outputs, d, gen, dtype)
    args = [features, [a[0] for a in adapters], [a[1] for a in adapters], norm_w, norm_b, fc_w, fc_b, head_w, head_b, scales]
    return to_device(args, device)


def to_device(args, device):
    return [[t.to(device) for t in a] if isinstance(a, list) else a.to(device) for a in args]


def differentiable(args):
    """The tensors of fusion args that get gradients (all but the dropout scales)."""
    out = []
    for a in args[:-1]:
        out += a if isinstance(a, list) else [a]
    return out


def with_grad(args):
    for t in differentiable(args):
        t.requires_grad_(True)
    return args


def assert_close_rel(got, want, tol=1e-5):
    """|got - want| <= tol * max(1, max|want|): 1e-5 relative to the tensor's scale."""
    scale = max(1.0, want.abs().max().item())
    err = (got - want).abs().max().item()
    assert err <= tol * scale, f"max error {err:.3g} > {tol} * {scale:.3g}"


# ---- text collation ---------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("pair", [False, True])
def test_collate_text_is_bit_exact_vs_both_references(device, pair):
    gen = torch.Generator().manual_seed(0)
    ids_a, off_a = random_csr(300, 80, gen)
    ids_b, off_b = random_csr(300, 80, gen)
    csr = [TokenCSR(ids_a, off_a)] + ([TokenCSR(ids_b, off_b)] if pair else [])
    special = SpecialTokens(**SPECIAL)
    for max_len, pad_multiple, n in [(3, 1, 5), (16, 8, 33), (64, 8, 256), (128, 1, 100), (512, 8, 300)]:
        rows = torch.randint(0, 300, (n,), generator=gen)
        kw = dict(ids_b=ids_b, offsets_b=off_b) if pair else {}
        want = reference.collate_text(ids_a, off_a, rows, **kw, **SPECIAL, max_len=max_len, pad_multiple=pad_multiple)
        engine = _collate_text_reference(csr, rows.tolist(), special, max_len, pad_multiple)
        assert_same(engine, want)
        dev = {k: v.to(device) for k, v in kw.items()}
        got = ops.collate_text(ids_a.to(device), off_a.to(device), rows.to(device), **dev, **SPECIAL,
                               max_len=max_len, pad_multiple=pad_multiple)
        assert all(t.device.type == device for t in got)
        assert_same(got, want)


@pytest.mark.parametrize("max_len", [16, 64, 128])
def test_collate_text_matches_the_tokenizers_own_padding(shared_data, max_len):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_text_checkpoint())
    sst = shared_data.sst2("dev").sentence.tolist()[:512]
    sts = shared_data.stsb("dev").head(512)
    a, b = sts.sentence1.tolist(), sts.sentence2.tolist()

    def csr(texts, cap):
        ids = tok(texts, add_special_tokens=False, truncation=cap is not None, max_length=cap)["input_ids"]
        return TokenCSR.from_lists(ids)

    single, col_a, col_b = csr(sst, max_len - 2), csr(a, None), csr(b, None)
    gen = torch.Generator().manual_seed(1)
    for texts, kw, base in [((sst,), {}, single), ((a, b), dict(ids_b=col_b.ids, offsets_b=col_b.offsets), col_a)]:
        for batch in (1, 32, 256):
            rows = torch.randperm(512, generator=gen)[:batch]
            got = ops.collate_text(base.ids, base.offsets, rows, **kw, cls_id=tok.cls_token_id, sep_id=tok.sep_token_id,
                                   pad_id=tok.pad_token_id, max_len=max_len, pad_multiple=8)
            ref = tok(*[[t[r] for r in rows.tolist()] for t in texts], padding=True, pad_to_multiple_of=8,
                      truncation="longest_first", max_length=max_len, return_tensors="pt")
            width = min(max_len, ref["input_ids"].shape[1])
            assert got[0].shape[1] == width
            assert_same(got, (ref["input_ids"][:, :width], ref["attention_mask"][:, :width], ref["token_type_ids"][:, :width]))


def test_collate_text_rejects_bad_rows_and_arguments():
    ids, off = torch.arange(10), torch.tensor([0, 4, 10])
    with pytest.raises(RuntimeError, match="out of range"):
        ops.collate_text(ids, off, torch.tensor([0, 2]), **SPECIAL, max_len=8)
    with pytest.raises(RuntimeError, match="point outside"):
        ops.collate_text(ids, torch.tensor([0, 4, 11]), torch.tensor([1]), **SPECIAL, max_len=8)
    with pytest.raises(RuntimeError, match="no room"):
        ops.collate_text(ids, off, torch.tensor([0]), ids_b=ids, offsets_b=off, **SPECIAL, max_len=2)
    with pytest.raises(RuntimeError, match="different numbers of rows"):
        ops.collate_text(ids, off, torch.tensor([0]), ids_b=ids, offsets_b=torch.tensor([0, 10]), **SPECIAL, max_len=8)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_collate_text(device):
    gen = torch.Generator().manual_seed(2)
    ids_a, off_a = (t.to(device) for t in random_csr(40, 30, gen))
    ids_b, off_b = (t.to(device) for t in random_csr(40, 30, gen))
    rows = torch.randint(0, 40, (9,), generator=gen).to(device)
    opcheck(torch.ops.ember.collate_text.default, (ids_a, off_a, None, None, rows, 101, 102, 0, 24, 8))
    opcheck(torch.ops.ember.collate_text.default, (ids_a, off_a, ids_b, off_b, rows, 101, 102, 0, 24, 8))


# ---- image collation --------------------------------------------------------------------
MEAN = torch.tensor([0.485, 0.456, 0.406]) * 255.0
STD = torch.tensor([0.229, 0.224, 0.225]) * 255.0


@pytest.mark.parametrize("device", DEVICES)
def test_collate_images_is_bit_exact_vs_reference(device):
    gen = torch.Generator().manual_seed(3)
    for n, h, w in [(1, 1, 1), (5, 7, 9), (16, 128, 128), (3, 224, 160)]:
        images = torch.randint(0, 256, (n, h, w, 3), generator=gen, dtype=torch.uint8).to(device)
        flip = (torch.rand(n, generator=gen) < 0.5).to(device)
        m, s = MEAN.to(device), STD.to(device)
        for f in (None, flip):
            assert_same([ops.collate_images(images, m, s, f)], [reference.collate_images(images, m, s, f)])
    opcheck(torch.ops.ember.collate_images.default, (images, m, s, flip))
    opcheck(torch.ops.ember.collate_images.default, (images, m, s, None))


def test_collator_gives_identical_batches_with_ops_and_references():
    gen = torch.Generator().manual_seed(4)
    ids, off = random_csr(64, 40, gen)
    ids2, off2 = random_csr(64, 40, gen)
    images = torch.randint(0, 256, (64, 32, 32, 3), generator=gen, dtype=torch.uint8)
    enc = Encoded(n=64, text=[TokenCSR(ids, off), TokenCSR(ids2, off2)], images=[images], numeric=None,
                  categorical=None, labels=None, kept_rows=None)
    rows = torch.randperm(64, generator=gen)[:20].tolist()
    for pair_mode in ("siamese", "cross"):
        batches = []
        for kernels in ("ops", "reference"):
            c = Collator(enc, SpecialTokens(**SPECIAL), max_text_len=32, pair_mode=pair_mode, pad_multiple=8,
                         mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), hflip=True, seed=7, kernels=kernels)
            batches.append([c(rows), c(rows)])  # twice: the flips differ between calls, alike between runs
        for got, want in zip(*batches):
            assert_same(got["text"], want["text"])
            assert_same(got["image"], want["image"])


# ---- fusion head ------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_fusion_forward_and_gradients_match_reference_on_random_shapes(device):
    rng = random.Random(5)
    gen = torch.Generator().manual_seed(5)
    real = dict(batch=256, in_features=[384, 768, 64], hidden=128, layers=1, outputs=2, dropout=0.1)  # MiniLM+ViT+tabular
    for case in range(13):
        shape = real if case == 0 else dict(
            batch=rng.randint(1, 64),
            in_features=[rng.randint(1, 96) for _ in range(rng.randint(1, 4))],
            hidden=rng.randint(1, 64),
            layers=rng.randint(0, 3),
            outputs=rng.randint(1, 5),
            dropout=rng.choice([0.0, 0.1, 0.5]),
        )
        args = with_grad(fusion_args(gen, **shape, device=device))
        weight = torch.randn(shape["batch"], shape["outputs"], generator=gen).to(device)
        got, want = ops.fusion_mlp(*args), reference.fusion_mlp(*args)
        assert_close_rel(got, want)
        g_got = torch.autograd.grad((got * weight).sum(), differentiable(args))
        g_want = torch.autograd.grad((want * weight).sum(), differentiable(args))
        for a, b in zip(g_got, g_want):
            assert_close_rel(a, b)


def test_registered_autograd_of_the_op_matches_the_wrapper():
    """torch.ops.ember.fusion_mlp's own autograd (register_autograd) and ops.fusion_mlp's
    lean Function give the same gradients."""
    gen = torch.Generator().manual_seed(9)
    args = with_grad(fusion_args(gen, batch=10, in_features=[6, 9, 4], hidden=7, layers=2, outputs=3, dropout=0.2))
    out, _ = torch.ops.ember.fusion_mlp.default(*args, 1e-5, 0.01, True)
    g_op = torch.autograd.grad(out.square().sum(), differentiable(args))
    g_wrapper = torch.autograd.grad(ops.fusion_mlp(*args).square().sum(), differentiable(args))
    for a, b in zip(g_op, g_wrapper):
        assert torch.equal(a, b)


def test_fusion_gradcheck_float64():
    gen = torch.Generator().manual_seed(6)
    for layers, dropout in [(0, 0.0), (1, 0.0), (2, 0.3)]:
        args = with_grad(fusion_args(gen, batch=4, in_features=[3, 5, 2], hidden=4, layers=layers, outputs=2,
                                     dropout=dropout, dtype=torch.float64))
        structure = [len(a) if isinstance(a, list) else None for a in args[:-1]]

        def f(*flat):
            it = iter(flat)
            rebuilt = [[next(it) for _ in range(n)] if n is not None else next(it) for n in structure]
            return ops.fusion_mlp(*rebuilt, args[-1])

        assert torch.autograd.gradcheck(f, differentiable(args))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_fusion_ops(device):
    gen = torch.Generator().manual_seed(7)
    for layers, dropout in [(0, 0.0), (2, 0.2)]:
        args = fusion_args(gen, batch=6, in_features=[5, 7, 3], hidden=4, layers=layers, outputs=2, dropout=dropout,
                           device=device)
        opcheck(torch.ops.ember.fusion_mlp.default, (*args, 1e-5, 0.01, False))
        _, saved = torch.ops.ember.fusion_mlp.default(*args, 1e-5, 0.01, True)
        grad = torch.randn(6, 2, generator=gen).to(device)
        features, aw, _, nw, _, fw, _, hw, _, scales = args
        bwd_args = (grad, features, aw, nw, fw, hw, scales, saved, 0.01, [True, False, True])
        opcheck(torch.ops.ember.fusion_mlp_backward.default, bwd_args)
        opcheck(torch.ops.ember.fusion_mlp.default, (*with_grad(args), 1e-5, 0.01, True))  # with its autograd


def test_fusion_skips_gradients_of_features_that_need_none():
    gen = torch.Generator().manual_seed(8)
    args = fusion_args(gen, batch=8, in_features=[6, 4], hidden=5, layers=1, outputs=3)
    with_grad(args)
    args[0][0].requires_grad_(False)  # a frozen backbone's features
    ops.fusion_mlp(*args).sum().backward()
    assert args[0][0].grad is None and args[0][1].grad is not None and args[1][0].grad is not None


def test_fusion_module_ops_and_reference_agree_in_training_mode():
    """Same seed, same dropout masks, same outputs and parameter gradients; same state_dict keys."""
    torch.manual_seed(0)
    mods = {k: FusionMLP([64, 96, 16], 32, 2, 0.3, 3, kernels=k) for k in ("ops", "reference")}
    mods["reference"].load_state_dict(mods["ops"].state_dict())
    assert list(mods["ops"].state_dict()) == list(mods["reference"].state_dict())
    assert {k.split(".")[0] for k in mods["ops"].state_dict()} == {"adapters", "mlp", "head"}
    feats = [torch.randn(24, f) for f in (64, 96, 16)]
    outs, grads = {}, {}
    for k, m in mods.items():
        m.train()
        torch.manual_seed(123)
        outs[k] = m(feats)
        outs[k].square().sum().backward()
        grads[k] = {n: p.grad for n, p in m.named_parameters()}
    assert_close_rel(outs["ops"], outs["reference"])
    for n in grads["ops"]:
        assert_close_rel(grads["ops"][n], grads["reference"][n])
    for m in mods.values():
        m.eval()
    with torch.inference_mode():
        assert_close_rel(mods["ops"](feats), mods["reference"](feats))


def test_unknown_kernels_setting_is_refused():
    with pytest.raises(InvalidArgument, match="env.kernels"):
        FusionMLP([4, 4], 4, 1, 0.1, 2, kernels="fast")


def test_extension_is_registered():
    assert ember_kernels._C.__file__.endswith(".so")
    for name in ("collate_text", "collate_images", "fusion_mlp", "fusion_mlp_backward"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"ember::{name}", "CPU")
        if torch.cuda.is_available():
            assert torch._C._dispatch_has_kernel_for_dispatch_key(f"ember::{name}", "CUDA")
