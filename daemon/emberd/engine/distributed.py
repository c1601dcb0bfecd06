"""Scale-out: how many processes a fit trains on, and how those processes stay in step.

A fit on several processes is Lightning DDP over torch.distributed (gloo on CPU, NCCL on
GPU). The ranks are always started from outside Lightning: by the daemon's job manager
(one spawned worker per rank, with torchrun's environment variables), or by torchrun or
SLURM for several machines. Lightning's cluster environments (``LightningEnvironment``
with ``LOCAL_RANK`` set, ``TorchElasticEnvironment``, ``SLURMEnvironment``) then see an
externally launched group and never re-run the caller's script.

Every decision that changes what the ranks do next (stop for time, write a checkpoint,
keep a validation's weights) is taken on rank 0 and broadcast, so that all ranks run the
same number of steps and call the same collectives."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.distributed as dist

from .errors import FailedPrecondition, InvalidArgument

__all__ = ["Scale", "SCALE_KEYS", "split_scale", "launched_rank", "local_world_size", "from_rank0", "broadcast_floats", "params_digest"]

STRATEGIES = ("auto", "ddp")

# AutoMM's spelling of the scale-out hyperparameters (kept out of the model's saved Config:
# they describe one fit, not the model, and a continued fit or resume may change them).
SCALE_KEYS = {"env.num_gpus": "num_gpus", "env.devices": "devices", "env.num_nodes": "num_nodes", "env.strategy": "strategy"}


@dataclass(frozen=True)
class Scale:
    devices: int = 1  # processes per node (ranks); on GPU one per GPU
    num_nodes: int = 1  # machines; beyond one, torchrun or SLURM starts the ranks
    strategy: str = "auto"  # "auto" (one process; "ddp" beyond) or "ddp"
    accelerator: str = "cpu"  # "cpu" (gloo) or "gpu" (NCCL)

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "Scale":
        return cls(**dict(d or {}))

    @classmethod
    def from_settings(cls, *, num_gpus: int = 0, devices: int = 0, num_nodes: int = 1, strategy: str = "auto") -> "Scale":
        """AutoMM's settings to a Scale. ``num_gpus``: GPUs per node (0: CPU, -1: all
        visible); ``devices``: processes per node (0: one per GPU, or one on CPU)."""
        for name, v, low in (("env.num_gpus", num_gpus, -1), ("env.devices", devices, 0), ("env.num_nodes", num_nodes, 1)):
            if v < low:
                raise InvalidArgument(f"{name} must be >= {low}, got {v}")
        if strategy not in STRATEGIES:
            hint = " Ember starts the ranks itself (the daemon, torchrun or SLURM): use 'ddp'." if strategy.startswith("ddp") else ""
            raise InvalidArgument(f"env.strategy must be one of {STRATEGIES}, got {strategy!r}.{hint}")
        if num_nodes > 1024:
            raise InvalidArgument(f"env.num_nodes must be at most 1024, got {num_nodes}")
        if num_gpus == -1:
            num_gpus = torch.cuda.device_count()
        if num_gpus > 0:
            if num_gpus > torch.cuda.device_count():
                raise FailedPrecondition(
                    f"env.num_gpus={num_gpus} but this machine has {torch.cuda.device_count()} GPU(s) visible; "
                    "ask for fewer, or set env.num_gpus=0 to train on CPU processes"
                )
            if devices and devices != num_gpus:
                raise InvalidArgument(f"env.devices={devices} and env.num_gpus={num_gpus} disagree: on GPU there is one process per GPU")
            return cls(devices=num_gpus, num_nodes=num_nodes, strategy=strategy, accelerator="gpu")
        if devices > 4096:
            raise InvalidArgument(f"env.devices must be at most 4096, got {devices}")
        return cls(devices=devices or 1, num_nodes=num_nodes, strategy=strategy, accelerator="cpu")

    def to_hyperparameters(self) -> dict[str, Any]:
        """The same scale in AutoMM's keys (what ``split_scale`` reads back)."""
        gpus = self.devices if self.accelerator == "gpu" else 0
        return {"env.num_gpus": gpus, "env.devices": self.devices, "env.num_nodes": self.num_nodes, "env.strategy": self.strategy}

    def trainer_args(self) -> dict[str, Any]:
        """``accelerator``, ``devices``, ``num_nodes`` and ``strategy`` for ``L.Trainer``.

        DDP looks for parameters without a gradient at each step: a text backbone's pooler
        never gets one, nor do the backbones while the linear probe has them frozen (a
        parameter no rank uses keeps ``grad=None``, so AdamW leaves it alone)."""
        if self.world_size == 1 and self.strategy == "auto":
            return {"accelerator": self.accelerator, "devices": 1, "num_nodes": 1, "strategy": "auto"}
        from lightning.pytorch.strategies import DDPStrategy

        strategy = DDPStrategy(
            process_group_backend="nccl" if self.accelerator == "gpu" else "gloo",
            find_unused_parameters=True,
        )
        return {"accelerator": self.accelerator, "devices": self.devices, "num_nodes": self.num_nodes, "strategy": strategy}


def _whole(v: Any) -> bool:
    """A whole number (or its text), not a bool."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        return False
    try:
        f = float(v)
    except ValueError:
        return False
    return f == f and abs(f) != float("inf") and f == int(f)


def split_scale(hyperparameters: Mapping[str, Any] | None) -> tuple[Scale | None, dict[str, Any]]:
    """The scale-out keys of ``hyperparameters`` as a Scale (None if there are none), and the rest."""
    rest = dict(hyperparameters or {})
    given = {SCALE_KEYS[k]: rest.pop(k) for k in list(rest) if k in SCALE_KEYS}
    if not given:
        return None, rest
    bad = {k: v for k, v in given.items() if (not isinstance(v, str) if k == "strategy" else not _whole(v))}
    if bad:
        raise InvalidArgument(f"scale-out hyperparameters take whole numbers (env.strategy a name), got {bad}")
    settings = {k: (str(v) if k == "strategy" else int(float(v))) for k, v in given.items()}
    return Scale.from_settings(**settings), rest


def launched_rank(scale: Scale) -> int:
    """This process's global rank in the group ``scale`` describes (0 on one process).

    A group must already have been started from outside (by the daemon, torchrun or SLURM):
    Lightning would otherwise re-run this process's script to start the other ranks."""
    if scale.world_size == 1:
        return 0
    env = os.environ
    rank, world = env.get("RANK", env.get("SLURM_PROCID")), env.get("WORLD_SIZE", env.get("SLURM_NTASKS"))
    if rank is None or world is None:
        raise FailedPrecondition(
            f"this fit asks for {scale.world_size} processes ({scale.devices} per node x {scale.num_nodes} node(s)), "
            "but this process was not started as one rank of a group. Fit through the daemon (it starts the ranks), "
            "or start the ranks with torchrun or SLURM running `python -m emberd.worker SPEC.json` (see the README)"
        )
    if int(world) != scale.world_size:
        raise FailedPrecondition(
            f"this process belongs to a group of {world} ranks but the fit asks for {scale.world_size} "
            f"({scale.devices} per node x {scale.num_nodes} node(s)); make env.devices and env.num_nodes match the launcher"
        )
    return int(rank)


def local_world_size() -> int:
    """Ranks on this machine (they share its cores)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("SLURM_NTASKS_PER_NODE", "1")))


def set_threads(cfg: Any) -> None:
    """torch's threads for ``cfg`` (a ``Config``): ``env.num_threads``, or this machine's
    cores shared by the ranks on it."""
    n = cfg.env.num_threads or max(1, (os.cpu_count() or 1) // local_world_size())
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def broadcast_floats(values: list[float]) -> list[float]:
    """Rank 0's ``values`` on every rank (one collective; all ranks must call it)."""
    if not _active():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.broadcast(t, src=0)
    return t.cpu().tolist()


def from_rank0(flag: bool) -> bool:
    """Rank 0's decision on every rank (a collective; free on one process)."""
    return flag if not _active() else bool(broadcast_floats([float(flag)])[0])


def params_digest(module: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer, in name order: equal only if bit-identical."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
