"""The few collectives deploypipe needs, each a no-op in a world of one (or inside
``solo``): decisions computed once on rank 0 and broadcast, statistics summed over ranks.
"""
from __future__ import annotations

import hashlib
import pickle
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from ..errors import DeploypipeError, InternalError
from ..utils.log import get_logger
from .dist import active, rank, solo

log = get_logger("dist")
T = TypeVar("T")


def broadcast_object(obj: T, src: int = 0) -> T:
    """``src``'s ``obj`` on every rank (pickled; for small values: decisions, reports)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_device())
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a world of one)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """The element-wise sum over ranks, as float64 (counts stay exact below 2**53)."""
    array = np.asarray(values, dtype=np.float64)
    if not active():
        return array
    tensor = torch.from_numpy(array.copy()).to(_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().numpy()


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy ``src``'s buffers (BatchNorm running statistics) into every rank's module.
    DDP sends them at the start of each forward, so after the last step of an epoch each
    rank holds statistics updated by its own batch: without this, ranks evaluate and save
    slightly different models."""
    if not active():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=src)


def barrier() -> None:
    if active():
        dist.barrier()


def on_rank_zero(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` computed once, on rank 0 (inside ``solo``), and broadcast to
    every rank; an error on rank 0 is raised on every rank, so none waits forever."""
    if not active():
        return fn(*args, **kwargs)
    outcome: tuple[str, Any] = ("ok", None)
    if rank() == 0:
        try:
            with solo():
                outcome = ("ok", fn(*args, **kwargs))
        except Exception as exc:  # re-raised below, on every rank
            outcome = ("error", _portable(exc))
    kind, value = broadcast_object(outcome)
    if kind == "error":
        raise value
    return value


def agree(obj: T, *, what: str, key: Callable[[T], Any] = lambda o: o) -> T:
    """Rank 0's ``obj`` on every rank. A rank whose own ``obj`` differed (compared by
    ``key``) logs it: it computed ``what`` from something that was not the same everywhere."""
    if not active():
        return obj
    chosen = broadcast_object(obj)
    if rank() != 0 and digest(key(obj)) != digest(key(chosen)):
        log.warning("rank %d computed a different %s than rank 0; every rank uses rank 0's", rank(), what)
    return chosen


def digest(obj: Any) -> str:
    """A short hash of a picklable value (numpy arrays compare by content)."""
    return hashlib.sha256(pickle.dumps(obj, protocol=4)).hexdigest()[:16]


def _portable(exc: Exception) -> Exception:
    """``exc`` itself when it pickles, else an InternalError that names it."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        if isinstance(exc, DeploypipeError):
            return DeploypipeError(exc.message, hint=exc.hint)
        return InternalError(f"{type(exc).__name__} on rank 0: {exc}")


def _device() -> torch.device:
    """Where collective tensors live: the current GPU under NCCL, the CPU otherwise."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
