"""``--nproc N``: run a deploypipe command again as N processes on this machine, through
``torch.distributed.run`` (torchrun) with its standalone rendezvous. No launcher of our
own: this only builds torchrun's argument list. For several machines, call torchrun
yourself (see the README, "Distributed fine-tuning")."""
from __future__ import annotations

import os
from typing import Sequence

from ..errors import InputError
from ..utils.log import get_logger
from .dist import DistEnv

log = get_logger("dist")


def torchrun_argv(command: Sequence[str], nproc: int) -> list[str]:
    """torchrun's arguments that run ``python -m deploypipe COMMAND...`` as ``nproc``
    processes here (``--nproc`` options removed from ``command``)."""
    return ["--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc),
            "-m", "deploypipe", *strip_nproc(command)]


def strip_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N``, so the workers do not launch again."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def should_launch(nproc: int | None) -> bool:
    """Whether ``--nproc`` asks for a launch: more than one process, and not already a
    torchrun worker (then torchrun decided the processes)."""
    if nproc is None or nproc <= 1:
        if nproc is not None and nproc < 1:
            raise InputError(f"--nproc must be at least 1, got {nproc}")
        return False
    if DistEnv.from_environ() is not None:
        log.info("already started by torchrun: --nproc %d is ignored", nproc)
        return False
    cores = os.cpu_count() or 1
    if nproc > cores:  # 64 processes on 2 cores: a load of 48 and nothing gained
        raise InputError(f"--nproc {nproc} starts more processes than this machine's {cores} cores",
                         hint=f"use at most --nproc {cores}")
    return True


def launch(command: Sequence[str], nproc: int) -> int:
    """Run ``deploypipe COMMAND...`` as ``nproc`` local processes; the exit code of the job
    (the first failing worker's, or 0)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun_main

    argv = torchrun_argv(command, nproc)
    log.info("launching %d processes: torchrun %s", nproc, " ".join(argv))
    try:
        torchrun_main(argv)
    except ChildFailedError as exc:
        _, first = exc.get_first_failure()
        return first.exitcode if first.exitcode and first.exitcode > 0 else 1
    return 0


def launch_from_cli(command: str, nproc: int) -> int:
    """``launch`` this process's own command line (``sys.argv``), which must hold ``command``."""
    import sys

    argv = sys.argv[1:]
    if command not in argv:
        raise InputError(f"--nproc relaunches the command line, but this process was not started as "
                         f"`deploypipe {command}`", hint="run it from a shell, or start it with torchrun")
    return launch(argv, nproc)
