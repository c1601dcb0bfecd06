"""ONNX export of a trained model (a bundle that ``ember.onnx.OnnxPredictor`` runs with
onnxruntime alone) and of dumped backbone folders.

The graph takes the tensors the model's encoders read, so that nothing but the tokenizer
and the manifest is needed around it:

- text: ``input_ids``, ``attention_mask``, ``token_type_ids`` (batch, seq), int64; with
  several sequences (siamese text columns) ``..._0``, ``..._1``, all of one length;
- images: ``image`` (``image_0``...) uint8 (batch, size, size, 3) RGB, decoded and
  center-cropped as in training; normalization is inside the graph;
- ``numeric`` float32 (batch, k) standardized, ``categorical`` int64 (batch, c) indices.

Outputs: ``logits`` and ``probabilities`` (batch, classes), or ``prediction`` (batch,) in
label units for regression. The fusion head runs its pure-torch reference (the graph needs
no custom-op library). Every export passes ``onnx.checker`` (full check) and a parity run
on real rows (the version's held-out validation rows, or the caller's) against the model
in torch, through the bundle runner's own preprocessing (``ember.preprocess``, torch-free
and shared with ``ember.onnx``), before it is published.

``python -m emberd.engine.export`` exports a stored version (the daemon runs it in a child
process: tracing must not share a process with serving threads) or a dumped backbone.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import shutil
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ember.preprocess import FORMAT, BundleInputs

from .errors import EmberError, FailedPrecondition, InvalidArgument, Unsupported
from .faults import fault
from .inference import raw_outputs
from .model_store import ModelStore, TrainedModel
from .storage import fresh_staging_dir, publish_dir, write_json
from .tasks import task_for

log = logging.getLogger("emberd.engine")

OPSET = 18
TOLERANCE = 1e-4
PARITY_ROWS = 256
OPSETS = range(7, 24)  # what torch.onnx writes: TorchScript 7-20, dynamo 18-23


def check_opset(opset: int) -> None:
    if opset not in OPSETS:
        raise InvalidArgument(f"opset_version {opset} is outside what the exporter writes ({OPSETS.start}-{OPSETS.stop - 1}); 0 means {OPSET}")


__all__ = ["export_model", "export_version", "export_hf_text", "export_timm_image", "OPSET", "TOLERANCE"]


class ParityError(EmberError):
    """onnxruntime disagrees with torch beyond the tolerance: the export is not published."""


class _Graph(nn.Module):
    """The model's network over plain named tensors (see the module docstring)."""

    def __init__(self, model: TrainedModel) -> None:
        super().__init__()
        net = copy.deepcopy(model.net).eval()
        if net.fusion is not None:
            net.fusion.kernels = "reference"
        self.net = net
        s = model.schema
        self.num_seqs = net.encoders["text"].num_seqs if s.text else 0
        self.num_images = len(s.image)
        self.has_numeric, self.has_categorical = bool(s.numeric), bool(s.categorical)
        self.regression = s.problem_type == "regression"
        self.label_mean, self.label_std = float(s.label_mean), float(s.label_std)
        if s.image:
            enc = net.encoders["image"]
            self.register_buffer("mean", torch.tensor(enc.mean).view(1, 3, 1, 1) * 255.0, persistent=False)
            self.register_buffer("std", torch.tensor(enc.std).view(1, 3, 1, 1) * 255.0, persistent=False)

    def forward(self, *xs: torch.Tensor) -> Any:
        batch: dict[str, Any] = {}
        i = 0
        if self.num_seqs:
            per = xs[: 3 * self.num_seqs]
            batch["text"] = tuple(torch.stack(per[k::3]) for k in range(3))  # (seqs, batch, len)
            i = 3 * self.num_seqs
        if self.num_images:
            batch["image"] = [(x.permute(0, 3, 1, 2).float() - self.mean) / self.std for x in xs[i : i + self.num_images]]
            i += self.num_images
        if self.has_numeric:
            batch["numeric"] = xs[i]
            i += 1
        if self.has_categorical:
            batch["categorical"] = xs[i]
        raw = self.net(batch)
        if self.regression:
            return raw[:, 0] * self.label_std + self.label_mean
        return raw, torch.softmax(raw, -1)


def _input_names(model: TrainedModel, num_seqs: int) -> tuple[list[dict[str, str]], list[str]]:
    s = model.schema
    text = []
    for k in range(num_seqs):
        suffix = "" if num_seqs == 1 else f"_{k}"
        text.append({n: f"{n}{suffix}" for n in ("input_ids", "attention_mask", "token_type_ids")})
    images = ["image" if len(s.image) == 1 else f"image_{k}" for k in range(len(s.image))]
    return text, images


def _example(model: TrainedModel, df: pd.DataFrame, num_seqs: int) -> tuple[torch.Tensor, ...]:
    """Real rows as the graph's inputs (at least 2 rows: torch.export specializes 0 and 1)."""
    enc = model.encode(df, with_labels=False, skip_bad_images=False)
    rows = list(range(min(len(df), 5)))
    batch = model.collator(enc, train=False)(rows)
    xs: list[torch.Tensor] = []
    if num_seqs:
        ids, mask, types = batch["text"]
        for k in range(num_seqs):
            xs += [ids[k], mask[k], types[k]]
    xs += [im[rows] for im in enc.images]
    if enc.numeric is not None:
        xs.append(batch["numeric"])
    if enc.categorical is not None:
        xs.append(batch["categorical"])
    return tuple(xs)


def _check_exportable(model: TrainedModel) -> None:
    t = model.tokenizer
    if t is not None and not getattr(t, "is_fast", False):
        raise Unsupported(
            f"the text model's tokenizer ({type(t).__name__}) has no fast tokenizer.json; the bundle's runner "
            "tokenizes with the `tokenizers` library. Fit with a checkpoint that ships tokenizer.json."
        )


Axes = dict[str, dict[int, str]]  # input/output name -> {axis: dimension name}; one name, one size


def _torch_export(
    module: nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str], axes: Axes, bounds: dict[str, int], what: str, opset: int
) -> None:
    """``module`` to one self-contained ONNX file at ``opset``, then ``onnx.checker`` (full
    check). The TorchScript exporter first: on this machine it exports MiniLM in ~5 s
    against ~20 s for torch.export (dynamo), whose tracing and decompositions dominate an
    export. A module TorchScript cannot trace goes through dynamo (``bounds``: each dynamic
    dimension's largest size). Either way the caller's parity run on real rows, at other
    batch and sequence sizes than the example, is what proves the graph. What ONNX cannot
    express becomes ``Unsupported`` naming the part and the reason."""
    import onnx

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's deprecation and tracer notes: parity decides
            torch.onnx.export(
                module, args, str(path), input_names=input_names, output_names=output_names, dynamic_axes=axes,
                opset_version=opset, dynamo=False, do_constant_folding=True,
            )
    except Exception as first:  # noqa: BLE001 - any TorchScript failure: dynamo is the second way
        log.warning("TorchScript could not export %s (%s); exporting it with torch.export (dynamo)", what, _reason(first))
        dims = {n: torch.export.Dim(n, min=1, max=bounds[n]) for n in {d for a in axes.values() for d in a.values()}}
        dynamic = (tuple({k: dims[d] for k, d in axes.get(n, {}).items()} for n in input_names),)
        try:
            torch.onnx.export(
                module, args, str(path), input_names=input_names, output_names=output_names, dynamic_shapes=dynamic,
                opset_version=opset, dynamo=True, external_data=False, optimize=True, verbose=False,
            )
        except torch.onnx.OnnxExporterError as e:
            raise Unsupported(f"ONNX cannot express {what}: {_reason(e)} (TorchScript: {_reason(first)})") from e
    _check_opset(onnx.load(str(path), load_external_data=False), opset, what)
    onnx.checker.check_model(str(path), full_check=True)


def _check_opset(model: Any, opset: int, what: str) -> None:
    """Name the ops the asked opset lacks (the TorchScript exporter writes some ops newer
    than the opset it was asked for; torch.onnx's dynamo keeps its own opset, silently,
    when it cannot convert down)."""
    import onnx

    got = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    nodes = [n for g in [model.graph.node, *(f.node for f in model.functions)] for n in g if n.domain in ("", "ai.onnx")]
    first = {}
    for op in sorted({n.op_type for n in nodes}):
        try:
            onnx.defs.get_schema(op, opset)
        except onnx.defs.SchemaError:
            first[op] = min(s.since_version for s in onnx.defs.get_all_schemas_with_history() if s.name == op and s.domain == "")
    if first:
        ops = ", ".join(f"{op} (from opset {v})" for op, v in first.items())
        raise Unsupported(f"ONNX opset {opset} cannot express {what}: it needs {ops}; export with opset_version >= {max(first.values())}")
    if got == opset:
        return
    raise Unsupported(f"torch.onnx could not convert {what} down to ONNX opset {opset} (it produced opset {got}); export with opset_version >= {got}")


def _signature(path: Path, which: str) -> list[dict[str, Any]]:
    """Name, element type and shape (symbolic axes by name) of the graph's inputs or outputs."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    out = []
    for v in graph.input if which == "input" else graph.output:
        t = v.type.tensor_type
        shape = [d.dim_param or d.dim_value for d in t.shape.dim]
        out.append({"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": shape})
    return out


def _reason(e: BaseException) -> str:
    """The cause torch.onnx reports, without its generic advice."""
    text = str(e)
    if "## Exception summary" in text:
        text = text.split("## Exception summary", 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("(Refer")]
    return " ".join(lines[:4])[:800]


def _parity(ours: np.ndarray, theirs: np.ndarray, what: str, labels: bool) -> dict[str, Any]:
    diff = float(np.abs(ours.astype(np.float64) - theirs.astype(np.float64)).max())
    same = bool((ours.argmax(1) == theirs.argmax(1)).all()) if labels else True
    if not np.isfinite(diff) or diff > TOLERANCE or not same:
        raise ParityError(
            f"ONNX parity check of {what} failed: max abs diff {diff:.3g} (tolerance {TOLERANCE}), "
            f"labels {'equal' if same else 'differ'}; the export was not published. Report this with the model's config.json"
        )
    return {"rows": int(len(ours)), "max_abs_diff": diff, "labels_equal": same}


def _versions(opset: int) -> dict[str, str]:
    import onnx
    import onnxruntime

    out = {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "torch": torch.__version__, }
    out["opset"] = str(opset)
    for pkg in ("emberd", "transformers", "timm"):
        try:
            out[pkg] = pkg_version(pkg)
        except Exception:
            pass
    return out


def export_model(
    model: Any,
    out_dir: str | Path,
    parity_rows: pd.DataFrame,
    *,
    backbones: bool = False,
    source: dict[str, Any] | None = None,
    opset: int = OPSET,
) -> Path:
    """Write the bundle for ``model`` into ``out_dir`` (staged beside it, renamed into place
    only once every check passed). ``parity_rows``: real rows (features; a label column is
    ignored) for the parity run; at least 2. ``opset``: the ONNX opset (default 18). The
    bundle is the model's task's (``tasks.Task.export``)."""
    check_opset(opset)
    return task_for(model).export(Path(out_dir), parity_rows, backbones=backbones, source=source, opset=opset)


def export_table(
    model: TrainedModel, out_dir: Path, parity_rows: pd.DataFrame, *, backbones: bool, source: dict[str, Any] | None, opset: int
) -> Path:
    """The table/fusion model's bundle (see the module docstring)."""
    _check_exportable(model)
    s = model.schema
    rows = parity_rows.reset_index(drop=True)
    s.check_columns(rows, with_label=False, what="the parity rows")
    if len(rows) < 2:
        raise InvalidArgument(f"the parity check needs at least 2 real rows, got {len(rows)}")
    with staged(out_dir) as staging:
        graph = _Graph(model).eval()
        text_names, image_names = _input_names(model, graph.num_seqs)
        inputs = [n for d in text_names for n in d.values()] + image_names
        inputs += ["numeric"] * graph.has_numeric + ["categorical"] * graph.has_categorical
        outputs = ["prediction"] if graph.regression else ["logits", "probabilities"]
        axes = {n: {0: "batch", 1: "seq"} if k < 3 * graph.num_seqs else {0: "batch"} for k, n in enumerate(inputs)}
        axes |= {n: {0: "batch"} for n in outputs}
        bounds = {"batch": 65536, "seq": model.cfg.text.max_text_len}
        what = f"this {s.problem_type} model over {'+'.join(s.modalities)} ({', '.join(type(e).__name__ for e in model.net.encoders.values())})"
        _torch_export(graph, _example(model, rows, graph.num_seqs), staging / "model.onnx", inputs, outputs, axes, bounds, what, opset)

        manifest: dict[str, Any] = {
            "format": FORMAT,
            "graph": "model.onnx",
            "problem_type": s.problem_type,
            "label": s.label,
            "classes": list(s.classes),
            "inputs": _signature(staging / "model.onnx", "input"),
            "outputs": _signature(staging / "model.onnx", "output"),
            "versions": _versions(opset),
            "source": source or {},
        }
        if s.problem_type == "regression":
            manifest["regression"] = {"label_mean": s.label_mean, "label_std": s.label_std, "applied": "inside the graph"}
        if s.text:
            model.tokenizer.save_pretrained(staging / "tokenizer")
            sp = model.special_tokens()
            pair_mode = model.cfg.text.text_pair_mode
            manifest["text"] = {
                "columns": list(s.text),
                "sequences": [list(s.text)] if graph.num_seqs == 1 else [[c] for c in s.text],
                "pair_mode": pair_mode,
                "inputs": text_names,
                "max_len": model.cfg.text.max_text_len,
                "cls_id": sp.cls_id, "sep_id": sp.sep_id, "pad_id": sp.pad_id,
                "tokenizer": "tokenizer/tokenizer.json",
                "how": "each column tokenized without special tokens, cut to max_len-2 (not for a cross pair); "
                "[CLS] a [SEP] (b [SEP]) with longest-first pair truncation to max_len; pads to the batch's longest",
            }
        if s.image:
            enc = model.net.encoders["image"]
            manifest["image"] = {
                "columns": list(s.image), "inputs": image_names, "size": model.cfg.image.image_size,
                "mean": list(enc.mean), "std": list(enc.std),
                "how": "decode (JPEG draft, EXIF orientation), RGB, shorter side resized and center-cropped to size "
                "(bilinear), uint8 HWC; (x/255 - mean)/std is inside the graph",
            }
        if s.numeric:
            manifest["numeric"] = {
                "columns": list(s.numeric), "input": "numeric",
                "mean": [s.numeric_stats[c][0] for c in s.numeric], "std": [s.numeric_stats[c][1] for c in s.numeric],
                "how": "(x - mean) / std; missing or non-numeric values become 0",
            }
        if s.categorical:
            manifest["categorical"] = {
                "columns": list(s.categorical), "input": "categorical",
                "categories": {c: list(s.categories[c]) for c in s.categorical},
                "how": "index of str(value) in categories, plus 1; 0 for missing or unknown",
            }
        write_json(staging / "manifest.json", manifest)

        # parity: raw rows through the bundle's own runner against the model in torch
        enc = model.encode(rows, with_labels=False, skip_bad_images=False)
        torch_raw = raw_outputs(model.net, model.collator(enc, train=False), enc.lengths(model.cfg.text.text_pair_mode), 32)
        ort_out = _run_bundle(staging, rows)
        if graph.regression:
            ours = (torch_raw[:, :1].astype(np.float64) * s.label_std + s.label_mean)
            manifest["parity"] = _parity(ours, ort_out["prediction"][:, None], what, labels=False)
        else:
            manifest["parity"] = _parity(torch_raw, ort_out["logits"], what, labels=True)

        if backbones:
            manifest["backbones"] = _export_backbones(model, rows, staging, opset)
        write_json(staging / "manifest.json", manifest)
    return out_dir


@contextmanager
def staged(out_dir: Path) -> Iterator[Path]:
    """A fresh staging folder beside ``out_dir``, published there when the block ends
    without an error (every check passed) and removed when it raises."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = fresh_staging_dir(out_dir.parent, out_dir.name)
    try:
        yield staging
        fault("export.mid")
        publish_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _run_bundle(bundle: Path, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every output of a bundle's graph in onnxruntime for ``rows``, preprocessed as
    ``ember.onnx.OnnxPredictor`` does (both run ``BundleInputs``)."""
    import onnxruntime as ort

    inputs = BundleInputs(bundle)
    session = ort.InferenceSession(str(inputs.graph), providers=["CPUExecutionProvider"])
    return inputs.run(session, rows)


def _export_backbones(model: TrainedModel, rows: pd.DataFrame, staging: Path, opset: int) -> list[dict[str, Any]]:
    """Each backbone as ``dump_model`` writes it, exported from that dump folder."""
    from .dump import dump_table_backbones

    out = []
    dump_root = staging / ".dump"
    for folder in dump_table_backbones(model, dump_root):
        target = staging / "backbones" / f"{folder.name}.onnx"
        target.parent.mkdir(exist_ok=True)
        if folder.name == "hf_text":
            texts = [str(v) for v in rows[model.schema.text[0]].head(PARITY_ROWS).tolist()]
            info = export_hf_text(folder, target, texts, opset)
        else:
            enc = model.encode(rows.head(PARITY_ROWS), with_labels=False, skip_bad_images=False)
            info = export_timm_image(folder, target, enc.images[0].numpy(), opset)
        out.append({"name": folder.name, "graph": f"backbones/{target.name}", **info})
    shutil.rmtree(dump_root)
    return out


def export_version(
    store_path: str | Path, version: int, out_dir: str | Path, *, parity_rows: pd.DataFrame | None = None, backbones: bool = False, opset: int = OPSET
) -> Path:
    """Export a stored version; parity rows default to its held-out validation rows."""
    store = ModelStore(store_path)
    model = store.load_version(version)
    if parity_rows is None:
        val = store.version_dir(version) / "val.parquet"
        if not val.exists():
            raise FailedPrecondition(f"version {version} has no validation rows for the parity check; pass real rows")
        parity_rows = pd.read_parquet(val).head(PARITY_ROWS)
    source = {"model_path": str(store.path), "version": version}
    return export_model(model, out_dir, parity_rows, backbones=backbones, source=source, opset=opset)


# ---- dumped backbones -----------------------------------------------------------------------
class _HFText(nn.Module):
    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state


def export_hf_text(folder: str | Path, out_path: str | Path, texts: list[str], opset: int = OPSET) -> dict[str, Any]:
    """A dumped ``hf_text/`` folder (transformers) to ONNX: inputs ``input_ids``,
    ``attention_mask``, ``token_type_ids`` (batch, seq); output ``last_hidden_state``
    (batch, seq, hidden). Parity on ``texts`` (at least 2 real sentences)."""
    import onnxruntime as ort
    from transformers import AutoModel, AutoTokenizer

    folder, out_path = Path(folder), Path(out_path)
    if len(texts) < 2:
        raise InvalidArgument("the parity check needs at least 2 real texts")
    backbone = AutoModel.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    types = enc.get("token_type_ids", torch.zeros_like(enc["input_ids"]))
    args = (enc["input_ids"], enc["attention_mask"], types)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    bounds = {"batch": 65536, "seq": tok.model_max_length if tok.model_max_length < 10**6 else 512}
    module = _HFText(backbone).eval()
    axes = {n: {0: "batch", 1: "seq"} for n in [*names, "last_hidden_state"]}
    _torch_export(module, args, out_path, names, ["last_hidden_state"], axes, bounds, f"the text backbone {type(backbone).__name__} at {folder}", opset)
    with torch.inference_mode():
        ours = module(*args).numpy()
    sess = ort.InferenceSession(str(out_path), providers=["CPUExecutionProvider"])
    theirs = sess.run(["last_hidden_state"], {n: a.numpy() for n, a in zip(names, args)})[0]
    m = args[1].numpy().astype(bool)  # real tokens (padding positions are not compared)
    parity = {**_parity(ours[m], theirs[m], f"hf_text {folder}", labels=False), "rows": len(texts), "tokens": int(m.sum())}
    return {"inputs": names, "outputs": ["last_hidden_state"], "parity": parity}


def export_timm_image(folder: str | Path, out_path: str | Path, images: np.ndarray, opset: int = OPSET) -> dict[str, Any]:
    """A dumped ``timm_image/`` folder to ONNX: input ``pixel_values`` float32 (batch, 3,
    H, W) normalized with the folder's mean/std; output ``features`` (batch, num_features).
    ``images``: uint8 (N, H, W, 3), N >= 2, real photos."""
    import onnxruntime as ort
    import timm

    folder, out_path = Path(folder), Path(out_path)
    if len(images) < 2:
        raise InvalidArgument("the parity check needs at least 2 real images")
    model = timm.create_model("local-dir:" + str(folder.resolve()), pretrained=True, num_classes=0).eval()
    cfg = model.pretrained_cfg or {}
    mean = torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1)
    std = torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
    axes = {"pixel_values": {0: "batch"}, "features": {0: "batch"}}
    what = f"the timm image backbone {cfg.get('architecture', type(model).__name__)} at {folder}"
    _torch_export(model, (x,), out_path, ["pixel_values"], ["features"], axes, {"batch": 65536}, what, opset)
    with torch.inference_mode():
        ours = model(x).numpy()
    sess = ort.InferenceSession(str(out_path), providers=["CPUExecutionProvider"])
    theirs = sess.run(["features"], {"pixel_values": x.numpy()})[0]
    parity = _parity(ours, theirs, f"timm_image {folder}", labels=False)
    return {"inputs": ["pixel_values"], "outputs": ["features"], "mean": mean.flatten().tolist(), "std": std.flatten().tolist(), "parity": parity}


# ---- command line (the daemon's child process, and dumped folders by hand) --------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emberd.engine.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("version", help="export a stored model version to a bundle folder")
    v.add_argument("model_path"); v.add_argument("version", type=int); v.add_argument("out")
    v.add_argument("--backbones", action="store_true", help="also export each backbone alone")
    v.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    v.add_argument("--rows", help="a table (csv/parquet) of real rows for the parity check")
    v.add_argument("--error-file", help="on failure, write {kind, message} JSON here")
    b = sub.add_parser("backbone", help="export a dumped hf_text/ or timm_image/ folder")
    b.add_argument("folder"); b.add_argument("out"); b.add_argument("--rows", required=True, help="a table of real rows")
    b.add_argument("--column", required=True, help="the text or image column of --rows")
    b.add_argument("--image-size", type=int, default=224, help="image side for the parity rows (timm)")
    args = ap.parse_args(argv)
    try:
        from .data import load_table

        if args.cmd == "version":
            rows = load_table(args.rows) if args.rows else None
            out = export_version(args.model_path, args.version, args.out, parity_rows=rows, backbones=args.backbones, opset=args.opset)
            print(json.dumps(json.loads((out / "manifest.json").read_text())["parity"]))
        else:
            folder = Path(args.folder)
            rows = load_table(args.rows)[args.column].head(PARITY_ROWS)
            if (folder / "tokenizer_config.json").exists() or (folder / "tokenizer.json").exists():
                info = export_hf_text(folder, args.out, [str(t) for t in rows])
            else:
                from .features import load_image

                info = export_timm_image(folder, args.out, np.stack([load_image(p, args.image_size) for p in rows]))
            print(json.dumps(info))
    except Exception as e:
        if getattr(args, "error_file", None):
            kind = type(e).__name__ if isinstance(e, EmberError) else "Internal"
            Path(args.error_file).write_text(json.dumps({"kind": kind, "message": str(e)}))
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
