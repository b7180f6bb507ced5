"""The process group of a distributed run: who this process is, how it joins and leaves
the group torchrun described, and sections that only rank 0 runs.

Nothing here starts processes: ``torchrun`` (or :func:`deploypipe.train.launch.launch`,
which calls it) does. A process that torchrun did not start is a world of one, and every
function here is then a cheap no-op.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
from dataclasses import dataclass
from typing import Iterator, Mapping

import torch
import torch.distributed as dist

from ..utils.log import LOGGER_NAME, get_logger

log = get_logger("dist")

# Rank-0-only sections entered and not yet left (see ``solo``).
_solo_depth = 0
_warned_unjoined = False


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a torchrun job (from RANK, WORLD_SIZE and LOCAL_RANK)."""

    rank: int
    world_size: int
    local_rank: int

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> "DistEnv | None":
        """The job torchrun described in the environment, or None when it did not start us."""
        if "WORLD_SIZE" not in environ or "RANK" not in environ:
            return None
        rank = int(environ["RANK"])
        return cls(rank, int(environ["WORLD_SIZE"]), int(environ.get("LOCAL_RANK", rank)))


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_rank_zero() -> bool:
    return rank() == 0


def active() -> bool:
    """Whether collectives take place: a process group of two or more, outside ``solo``."""
    return is_initialized() and world_size() > 1 and _solo_depth == 0


def default_backend() -> str:
    """NCCL when this process has a GPU, gloo otherwise."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_distributed(backend: str | None = None, *, timeout_minutes: float = 30.0) -> DistEnv | None:
    """Join the process group torchrun described (env:// rendezvous); None when torchrun did
    not start this process. Ranks other than 0 log warnings and errors only."""
    env = DistEnv.from_environ()
    if env is None or is_initialized():
        return env
    backend = backend or default_backend()
    if backend == "nccl":
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(backend, rank=env.rank, world_size=env.world_size,
                            timeout=datetime.timedelta(minutes=timeout_minutes))
    if env.rank != 0:
        logging.getLogger(LOGGER_NAME).setLevel(logging.WARNING)
    log.info("distributed: %d processes (%s)", env.world_size, backend)
    return env


def shutdown() -> None:
    """Leave the process group (after a barrier, so no rank leaves while others still talk)."""
    if is_initialized():
        if world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed_session(backend: str | None = None) -> Iterator[DistEnv | None]:
    """``init_distributed`` for the length of a command; the group is left on the way out
    (without a barrier after an error: the other ranks are stopped by torchrun)."""
    owned = not is_initialized()
    env = init_distributed(backend)
    ok = False
    try:
        yield env
        ok = True
    finally:
        if owned and is_initialized():
            if ok:
                shutdown()
            else:
                dist.destroy_process_group()


@contextlib.contextmanager
def solo() -> Iterator[None]:
    """A section that only rank 0 runs (writing files, measuring latency): inside it,
    collectives are local no-ops, training does not wrap in DDP and loaders do not shard."""
    global _solo_depth
    _solo_depth += 1
    try:
        yield
    finally:
        _solo_depth -= 1


def warn_if_unjoined() -> None:
    """torchrun started this process but no process group was joined: say so, once."""
    global _warned_unjoined
    env = DistEnv.from_environ()
    if env is None or env.world_size < 2 or is_initialized() or _warned_unjoined:
        return
    _warned_unjoined = True
    log.warning("torchrun started %d processes but no process group was joined, so each trains alone; "
                "call deploypipe.train.init_distributed() first (the CLI does)", env.world_size)
