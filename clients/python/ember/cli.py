"""``ember``: the command line over the client.

    ember status | models | jobs [MODEL] | watch JOB | cancel JOB
    ember fit MODEL TABLE --label COL [--time-limit S] [--hp KEY=JSON ...] [--devices N]
    ember resume MODEL [TABLE] [--devices N] | transfer MODEL DUMP_ARTIFACT TABLE --label COL
    ember dump MODEL DEST | predict MODEL TABLE
    ember batch-predict MODEL TABLE DEST [--proba] [--server-path]   (any size: a job; DEST/predictions.parquet)
    ember export MODEL DEST [--backbones] [--parity-rows TABLE]
    ember onnx-predict BUNDLE TABLE      (onnxruntime only: no daemon, no torch)
"""

from __future__ import annotations

import argparse
import json
import sys

from .client import Client, EmberRpcError, read_table
from .v1 import job_pb2, model_pb2


def _hp(pairs: list[str]) -> dict:
    out = {}
    for p in pairs or []:
        k, _, v = p.partition("=")
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def _scale(args: argparse.Namespace) -> dict:
    return {"devices": args.devices, "num_nodes": args.num_nodes, "strategy": args.strategy}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ember", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--address", help="daemon address (default: EMBER_ADDRESS, else a local daemon, started if needed)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("status")
    sub.add_parser("models")
    j = sub.add_parser("jobs"); j.add_argument("model", nargs="?", default="")
    w = sub.add_parser("watch"); w.add_argument("job")
    c = sub.add_parser("cancel"); c.add_argument("job")
    for name in ("fit", "transfer"):
        f = sub.add_parser(name)
        f.add_argument("model")
        if name == "transfer":
            f.add_argument("dump_artifact")
        f.add_argument("table")
        f.add_argument("--label", required=name == "transfer")
        f.add_argument("--time-limit", type=float)
        f.add_argument("--eval-metric")
        f.add_argument("--hp", action="append", help="hyperparameter KEY=JSON (repeatable)")
    r = sub.add_parser("resume"); r.add_argument("model"); r.add_argument("table", nargs="?")
    for p in (sub.choices["fit"], sub.choices["transfer"], r):
        p.add_argument("--devices", type=int, default=0, help="train on this many processes (Lightning DDP; gloo on CPU, NCCL on GPU)")
        p.add_argument("--num-nodes", type=int, default=0, help="machines (beyond one: torchrun or SLURM starts the ranks)")
        p.add_argument("--strategy", default="", help="'ddp' (the default beyond one process)")
    d = sub.add_parser("dump"); d.add_argument("model"); d.add_argument("dest")
    e = sub.add_parser("export"); e.add_argument("model"); e.add_argument("dest")
    e.add_argument("--backbones", action="store_true", help="also export each backbone alone")
    e.add_argument("--parity-rows", help="a table of real rows for the parity check (default: held-out rows)")
    e.add_argument("--opset", type=int, default=0, help="ONNX opset (default: the daemon's, 18)")
    o = sub.add_parser("onnx-predict"); o.add_argument("bundle"); o.add_argument("table")
    pr = sub.add_parser("predict"); pr.add_argument("model"); pr.add_argument("table")
    bp = sub.add_parser("batch-predict", help="predict a table of any size in a job; writes DEST/predictions.parquet")
    bp.add_argument("model"); bp.add_argument("table"); bp.add_argument("dest", help="folder to write predictions.parquet into")
    bp.add_argument("--proba", action="store_true", help="also write class probabilities (proba_<class> columns)")
    bp.add_argument("--server-path", action="store_true", help="TABLE is a file under the daemon's --data-roots (not uploaded)")
    for p in (d, e, pr, bp):
        p.add_argument("--version", type=int, default=0, help="the version (default: the current one)")
        p.add_argument("--alias", default="", help="the version an alias names (SetAlias)")
    dv = sub.add_parser("delete-version", help="delete one version (not the current one, nor one an alias names)")
    dv.add_argument("model"); dv.add_argument("version", type=int)
    sa = sub.add_parser("alias", help="point an alias at a version (rollback: point it back)")
    sa.add_argument("model"); sa.add_argument("alias"); sa.add_argument("version", type=int)
    ua = sub.add_parser("unalias", help="remove an alias"); ua.add_argument("model"); ua.add_argument("alias")
    args = ap.parse_args(argv)
    if args.cmd == "onnx-predict":
        from .onnx import OnnxPredictor

        for v in OnnxPredictor(args.bundle).predict(read_table(args.table)):
            print(v)
        return 0
    try:
        client = Client(args.address)
        if args.cmd == "status":
            st = client.stats()
            print(f"daemon {client.address}: SERVING; {len(client.list_models())} model(s); cache {st.cache_hits} hits, "
                  f"{st.cache_misses} misses, {st.cache_evictions} evictions, {st.cache_bytes}/{st.cache_budget_bytes} bytes")
            for d in st.daemons:  # the daemons sharing its registry
                me = " (this one)" if d.id == st.daemon_id else ""
                print(f"  daemon {d.id}{me} at {d.address or '?'} on {d.host} pid {d.pid}: {d.running_jobs} job(s) running, "
                      f"heartbeat {d.heartbeat_age_s:.1f} s ago")
        elif args.cmd == "models":
            for m in client.list_models():
                state = model_pb2.ModelState.Name(m.state).removeprefix("MODEL_STATE_").lower()
                aliases = " ".join(f"{a}=v{v}" for a, v in sorted(m.aliases.items()))
                training = " (training)" if m.training and m.current_version else ""
                print(f"{m.name}\tv{m.current_version}\t{m.problem_type}\tlabel={m.label}\t{state}{training}\t{aliases}")
        elif args.cmd == "jobs":
            for jb in client.list_jobs(args.model):
                print(f"{jb.id}\t{jb.model_name}\t{job_pb2.JobKind.Name(jb.kind)[9:]}\t{job_pb2.JobState.Name(jb.state)[10:]}\t{jb.error}")
        elif args.cmd in ("watch", "fit", "transfer", "resume"):
            if args.cmd == "watch":
                job = client.get_job(args.job)
            elif args.cmd == "fit":
                job = client.fit(args.model, read_table(args.table), label=args.label or "", time_limit=args.time_limit,
                                 eval_metric=args.eval_metric, hyperparameters=_hp(args.hp), **_scale(args))
            elif args.cmd == "transfer":
                job = client.transfer(args.model, args.dump_artifact, read_table(args.table), label=args.label,
                                      time_limit=args.time_limit, eval_metric=args.eval_metric, hyperparameters=_hp(args.hp), **_scale(args))
            else:
                job = client.resume(args.model, read_table(args.table) if args.table else None, **_scale(args))
            job = client.wait(job, description=args.cmd)
            print(f"job {job.id}: {job_pb2.JobState.Name(job.state)[10:]} {('version ' + str(job.version)) if job.version else job.error}")
            return 0 if job.state == job_pb2.JOB_STATE_SUCCEEDED else 1
        elif args.cmd == "cancel":
            print(job_pb2.JobState.Name(client.cancel(args.job).state))
        elif args.cmd in ("dump", "export"):
            if args.cmd == "dump":
                art = client.dump(args.model, args.version, alias=args.alias)
            else:
                rows = read_table(args.parity_rows) if args.parity_rows else None
                art = client.export(args.model, args.version, alias=args.alias, parity_data=rows, backbones=args.backbones, opset_version=args.opset)
            for f in client.download(art.id, args.dest):
                print(f)
        elif args.cmd == "predict":
            df = read_table(args.table)
            r = client.predict(args.model, df, version=args.version, alias=args.alias)
            for found in r.detections:  # a detector: one JSON line of boxes per row
                print(json.dumps([{"bbox": [b.x1, b.y1, b.x2, b.y2], "score": b.score, "class": b.label} for b in found.boxes]))
            for v in (r.labels or r.values):
                print(v)
        elif args.cmd == "batch-predict":
            where = {"server_path": args.table} if args.server_path else {"data": args.table}
            job = client.batch_predict(args.model, **where, version=args.version, alias=args.alias, probabilities=args.proba)
            print(f"job {job.id}: {len(client.batch_result(job, args.dest))} rows -> {args.dest}/predictions.parquet")
        elif args.cmd == "delete-version":
            client.delete_version(args.model, args.version)
            print(f"deleted {args.model} v{args.version}")
        elif args.cmd in ("alias", "unalias"):
            m = client.set_alias(args.model, args.alias, args.version) if args.cmd == "alias" else client.delete_alias(args.model, args.alias)
            print(" ".join(f"{a}=v{v}" for a, v in sorted(m.aliases.items())) or "(no aliases)")
    except EmberRpcError as e:
        print(f"ember: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
