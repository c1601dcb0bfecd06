"""Training samples/s of one process against several DDP processes (Lightning DDP, gloo on
CPU, NCCL on GPU), through the daemon's real path: a Fit job whose ranks the daemon starts.

The same SST-2 rows, the same global batch (``env.batch_size`` is split over the ranks) and
one epoch for each run; samples/s is the engine's own figure (the whole group's samples over
the training loop's time, its validations included), read from the version's metrics.
Runs alternate between the settings so that machine load hits them alike.

    python bench/ddp_throughput.py [--rows 400] [--devices 1 2] [--repeats 1] [--gpus]

With ``--gpus`` each setting is a number of GPUs (``env.num_gpus``) and the table adds the
rate per GPU. On CPU the ranks share the machine's cores (each gets cores / ranks threads),
so the table also runs one process on one thread: on a loaded machine one process on all
cores can be far slower than that (threads wait for each other), which is then most of
what two single-threaded ranks gain.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ember import Client
from ember.v1 import job_pb2
from ember_examples import datasets
from emberd.engine.model_store import ModelStore
from emberd.engine.storage import read_json
from emberd.server import create_server
from emberd.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=400)
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--gpus", action="store_true", help="settings are GPUs (env.num_gpus), not CPU processes")
    args = ap.parse_args()
    train = datasets.sst2("train").sample(n=args.rows, random_state=0).reset_index(drop=True)
    tuning = datasets.sst2("dev").iloc[:32]
    hp = {"optim.max_epochs": 1, "optim.val_check_interval": 1.0, "optim.head_init_rows": 64}
    # (processes, threads per process; 0 = cores / processes)
    settings = [(d, 0) for d in args.devices] + ([] if args.gpus else [(1, 1)])
    rates: dict[tuple[int, int], list[float]] = {s: [] for s in settings}
    with tempfile.TemporaryDirectory(prefix="ember-ddp-bench-") as tmp:
        root = Path(tmp) / "root"
        server = create_server(Settings(port=0, root=str(root)))
        try:
            with Client(f"127.0.0.1:{server.port}") as c:
                for r in range(args.repeats):
                    for d, threads in settings:
                        name = f"bench-{d}-{threads}-{r}"
                        run_hp = {**hp, "env.num_threads": threads}
                        scale = {"hyperparameters": {**run_hp, "env.num_gpus": d}} if args.gpus else {"hyperparameters": run_hp, "devices": d}
                        job = c.wait(c.fit(name, train, tuning, label="label", **scale), progress=False)
                        if job.state != job_pb2.JOB_STATE_SUCCEEDED:
                            raise SystemExit(f"{name}: {job_pb2.JobState.Name(job.state)} {job.error}")
                        metrics = read_json(ModelStore(root / "models" / name).version_dir(job.version) / "metrics.json")
                        rates[(d, threads)].append(metrics["samples_per_s"])
        finally:
            server.stop(1)
    base = max(rates[settings[0]])
    unit = "GPUs" if args.gpus else "processes"
    print(f"SST-2, {args.rows} rows, 1 epoch, global batch 32, best of {args.repeats}")
    print(f"| {unit} | threads each | samples/s | per {unit[:-1] if args.gpus else 'process'} | ratio vs first row |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for d, threads in settings:
        best = max(rates[(d, threads)])
        print(f"| {d} | {threads or 'cores / processes'} | {best:.1f} | {best / d:.1f} | {best / base:.2f} |")


if __name__ == "__main__":
    main()
