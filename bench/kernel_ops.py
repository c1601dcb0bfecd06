"""ember_kernels' ops against their references, measured in one run.

- Text collation over SST-2 (single sentences) and STS-B (pairs) token lengths, MiniLM's
  tokenizer, batch 32..512: the op vs the pure-torch reference (``ember_kernels.reference``),
  the engine's per-row loop (``env.kernels="reference"``) and plain per-sample Python padding
  + ``torch.stack`` as AutoGluon's collators do it.
- Image collation (uint8 128x128 RGB): the op vs the eager reference and per-sample
  ``to_tensor``/normalize + ``torch.stack``.
- The fusion head, widths 384 (MiniLM) + 768 (a ViT-B) + 64 (tabular), hidden 128, one unit,
  dropout 0.1, training mode: forward + backward of the op vs the eager modules.

Prints a table of times and ratios (>1: the op is faster) and saves bench/out/kernels.png.
``--device cuda`` runs the same on a GPU. ``--quick`` measures fewer sizes, for shorter runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ember.onnx import truncate_pair
from ember_examples import datasets
from ember_kernels import ops, reference
from emberd.engine.config import default_text_checkpoint
from emberd.engine.features import SpecialTokens, TokenCSR, _collate_text_reference
from emberd.engine.models.fusion import FusionMLP

OUT = Path(__file__).resolve().parent / "out"


def measure(fns: dict[str, Callable[[], object]], device: str, min_time: float = 0.1, rounds: int = 7) -> dict[str, float]:
    """Median seconds per call of each function. Rounds alternate between the functions, so
    that a change in the machine's load hits all of them alike."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    calls = {}
    for name, fn in fns.items():
        fn()  # warm up
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        calls[name] = max(1, int(min_time / max(time.perf_counter() - t0, 1e-6)))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            sync()
            times[name].append((time.perf_counter() - t0) / calls[name])
    return {name: statistics.median(t) for name, t in times.items()}


# ---- text -------------------------------------------------------------------------------
def autogluon_style_text(columns: list[TokenCSR], rows: list[int], special: SpecialTokens, max_len: int, multiple: int):
    """Per sample: build the sequence and its type ids as tensors; then pad each to the
    batch's width and ``torch.stack`` (AutoGluon's text processor + Pad/Stack collators)."""
    seqs, types = [], []
    for r in rows:
        spans = [c.ids[c.offsets[r] : c.offsets[r + 1]] for c in columns]
        if len(spans) == 1:
            a = spans[0][: max_len - 2]
            seq = torch.cat([torch.tensor([special.cls_id]), a, torch.tensor([special.sep_id])])
            typ = torch.zeros(len(seq), dtype=torch.int64)
        else:
            la, lb = truncate_pair(len(spans[0]), len(spans[1]), max_len - 3)
            seq = torch.cat([torch.tensor([special.cls_id]), spans[0][:la], torch.tensor([special.sep_id]),
                             spans[1][:lb], torch.tensor([special.sep_id])])
            typ = torch.cat([torch.zeros(la + 2, dtype=torch.int64), torch.ones(lb + 1, dtype=torch.int64)])
        seqs.append(seq)
        types.append(typ)
    longest = max(len(s) for s in seqs)
    width = min(max_len, -(-longest // multiple) * multiple)
    ids = torch.stack([F.pad(s, (0, width - len(s)), value=special.pad_id) for s in seqs])
    mask = torch.stack([F.pad(torch.ones(len(s), dtype=torch.int64), (0, width - len(s))) for s in seqs])
    tt = torch.stack([F.pad(t, (0, width - len(t))) for t in types])
    return ids, mask, tt


def _tokenizer():
    """MiniLM's tokenizer; where its package is missing (a bare GPU machine), words with
    made-up ids, which keeps the rows' lengths close (printed)."""
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(default_text_checkpoint())
        return tok, SpecialTokens(tok.cls_token_id, tok.sep_token_id, tok.pad_token_id)
    except ImportError:
        print("(MiniLM tokenizer not installed: text rows tokenized into words)")

        def words(texts, add_special_tokens, truncation, max_length):
            ids = [[1000 + hash(w) % 29000 for w in t.split()] for t in texts]
            return {"input_ids": [r[:max_length] if truncation else r for r in ids]}

        return words, SpecialTokens(101, 102, 0)


def bench_text(batches: list[int], device: str, rng: np.random.Generator) -> list[dict]:
    tok, special = _tokenizer()
    max_len = 128

    def csr(texts: list[str], cap: int | None) -> TokenCSR:
        ids = tok(texts, add_special_tokens=False, truncation=cap is not None, max_length=cap)["input_ids"]
        return TokenCSR.from_lists(ids)

    if datasets.shared_available():
        sst, sts = datasets.sst2("dev").sentence.tolist(), datasets.stsb("dev")
    else:  # the samples shipped in examples/data
        print(f"(no real data at {datasets.SHARED}: text rows from the shipped samples)")
        sst, sts = datasets.sample("sst2_dev").sentence.tolist(), datasets.sample("stsb_dev")
    data = {
        "text SST-2": [csr(sst, max_len - 2)],
        "text STS-B pair": [csr(sts.sentence1.tolist(), None), csr(sts.sentence2.tolist(), None)],
    }
    results = []
    for name, cols in data.items():
        n = len(cols[0].offsets) - 1
        dev_cols = [(c.ids.to(device), c.offsets.to(device)) for c in cols]
        for batch in batches:
            rows = rng.choice(n, size=batch, replace=batch > n).tolist()
            rows_t = torch.tensor(rows, device=device)
            pair = dict(ids_b=dev_cols[1][0], offsets_b=dev_cols[1][1]) if len(cols) == 2 else {}
            kw = dict(cls_id=special.cls_id, sep_id=special.sep_id, pad_id=special.pad_id, max_len=max_len, pad_multiple=8)
            got = ops.collate_text(*dev_cols[0], rows_t, **pair, **kw)
            want = autogluon_style_text(cols, rows, special, max_len, 8)
            assert all(torch.equal(g.cpu(), w) for g, w in zip(got, want)), "the per-sample baseline disagrees"
            fns = {
                "op": lambda: ops.collate_text(*dev_cols[0], rows_t, **pair, **kw),
                "reference": lambda: reference.collate_text(*dev_cols[0], rows_t, **pair, **kw),
            }
            if device == "cpu":
                fns["engine loop"] = lambda: _collate_text_reference(cols, rows, special, max_len, 8)
                fns["per-sample"] = lambda: autogluon_style_text(cols, rows, special, max_len, 8)
            results.append({"what": name, "batch": batch, **measure(fns, device)})
    return results


# ---- images -----------------------------------------------------------------------------
def bench_images(batches: list[int], device: str, rng: np.random.Generator) -> list[dict]:
    mean = torch.tensor([0.485, 0.456, 0.406]) * 255.0
    std = torch.tensor([0.229, 0.224, 0.225]) * 255.0
    pool = torch.from_numpy(rng.integers(0, 256, size=(max(batches), 128, 128, 3), dtype=np.uint8))
    results = []
    for batch in batches:
        imgs = pool[:batch].to(device)
        flip = torch.from_numpy(rng.random(batch) < 0.5).to(device)
        m, s = mean.to(device), std.to(device)

        def per_sample():
            # per image: HWC uint8 -> CHW float, flip, normalize; then torch.stack
            out = []
            for i in range(batch):
                x = imgs[i].permute(2, 0, 1).float()
                if flip[i]:
                    x = x.flip(-1)
                out.append((x - m.view(3, 1, 1)) / s.view(3, 1, 1))
            return torch.stack(out)

        fns = {
            "op": lambda: ops.collate_images(imgs, m, s, flip),
            "reference": lambda: reference.collate_images(imgs, m, s, flip),
        }
        if device == "cpu":
            fns["per-sample"] = per_sample
        results.append({"what": "images 128px", "batch": batch, **measure(fns, device)})
    return results


# ---- fusion head ------------------------------------------------------------------------
def bench_fusion(batches: list[int], device: str) -> list[dict]:
    widths = [384, 768, 64]
    torch.manual_seed(0)
    mods = {k: FusionMLP(widths, 128, 1, 0.1, 2, kernels=k).to(device).train() for k in ("ops", "reference")}
    mods["reference"].load_state_dict(mods["ops"].state_dict())
    results = []
    for batch in batches:
        feats = [torch.randn(batch, w, device=device, requires_grad=True) for w in widths]

        def step(m):
            def run():
                m.zero_grad(set_to_none=True)
                for f in feats:
                    f.grad = None
                m(feats).square().mean().backward()

            return run

        def infer(m):
            def run():
                with torch.inference_mode():
                    m(feats)

            return run

        results.append({"what": "fusion fwd+bwd", "batch": batch,
                        **measure({"op": step(mods["ops"]), "reference": step(mods["reference"])}, device)})
        for m in mods.values():
            m.eval()
        results.append({"what": "fusion fwd (eval)", "batch": batch,
                        **measure({"op": infer(mods["ops"]), "reference": infer(mods["reference"])}, device)})
        for m in mods.values():
            m.train()
    return results


# ---- report -----------------------------------------------------------------------------
def print_table(results: list[dict], device: str) -> None:
    cols = ["op", "reference", "engine loop", "per-sample"]
    print(f"\nember_kernels on {device} ({torch.get_num_threads()} threads), median time per batch; "
          "'x' = that time / the op's time (>1: the op is faster)")
    head = f"{'what':<18}{'batch':>6}" + "".join(f"{c:>14}" for c in cols) + "".join(f"{'x ' + c:>16}" for c in cols[1:])
    print(head)
    print("-" * len(head))
    for r in results:
        line = f"{r['what']:<18}{r['batch']:>6}"
        line += "".join(f"{r[c] * 1e6:>12.1f}us" if c in r else f"{'':>14}" for c in cols)
        line += "".join(f"{r[c] / r['op']:>15.1f}x" if c in r else f"{'':>16}" for c in cols[1:])
        print(line)


def plot(results: list[dict], device: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    whats = list(dict.fromkeys(r["what"] for r in results))
    fig, axes = plt.subplots(1, len(whats), figsize=(4 * len(whats), 3.6), squeeze=False)
    for ax, what in zip(axes[0], whats):
        rows = [r for r in results if r["what"] == what]
        for base in ("reference", "engine loop", "per-sample"):
            pts = [(r["batch"], r[base] / r["op"]) for r in rows if base in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=f"{base} / op")
        ax.axhline(1.0, color="gray", lw=0.8, ls="--")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ratios = [r[b] / r["op"] for r in rows for b in ("reference", "engine loop", "per-sample") if b in r]
        ax.set_ylim(min(0.5, min(ratios) / 1.5), max(2.0, max(ratios) * 1.5))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_title(what)
        ax.set_xlabel("batch")
        ax.set_ylabel("speedup of the op")
        ax.legend(fontsize=7)
    fig.suptitle(f"ember_kernels vs references ({device}, {torch.get_num_threads()} threads)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"\nplot: {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--quick", action="store_true", help="batches 32, 256 and 512 only")
    ap.add_argument("--plot", default=str(OUT / "kernels.png"))
    args = ap.parse_args()
    batches = [32, 256, 512] if args.quick else [32, 64, 128, 256, 512]
    rng = np.random.default_rng(0)
    results = []
    results += bench_text(batches, args.device, rng)
    results += bench_images([b for b in batches if b <= 256], args.device, rng)
    results += bench_fusion(batches, args.device)
    print_table(results, args.device)
    plot(results, args.device, Path(args.plot))


if __name__ == "__main__":
    main()
