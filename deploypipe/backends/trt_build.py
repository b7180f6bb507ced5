"""The TensorRT build as small steps named for the conversion they do, as Polygraphy's
loaders are: ONNX path -> network, build options -> builder config, network -> engine
bytes, engine bytes -> engine. Each step takes the ``tensorrt`` module it works with, which
the caller imported (lazily), so that tests can hand in a fake one.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import DeviceError, UnsupportedError
from ..utils.log import get_logger
from .trt_options import TrtBuildOptions

log = get_logger("backends.tensorrt")


def trt_logger(trt: Any) -> Any:
    """A TensorRT logger: errors only, everything with ``-v``."""
    verbose = log.isEnabledFor(logging.DEBUG)
    return trt.Logger(trt.Logger.INFO if verbose else trt.Logger.ERROR)


def network_flags(trt: Any, options: TrtBuildOptions) -> int:
    """``create_network`` flags: explicit batch is implicit in TensorRT 10+; strongly typed
    where precision comes from the graph (TensorRT 11 accepts the flag and is always so)."""
    if not options.strongly_typed:
        return 0
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def network_from_onnx_path(trt: Any, builder: Any, logger: Any, path: str | Path,
                           options: TrtBuildOptions) -> tuple[Any, Any]:
    """(network, parser) parsed from the ONNX file; the parser must outlive the network's
    build because it owns the weights."""
    network = builder.create_network(network_flags(trt, options))
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse_from_file(str(path))
    if not ok or parser.num_errors:
        errors = parse_errors(parser)
        raise UnsupportedError(f"TensorRT cannot parse {str(path)!r}: "
                               f"{'; '.join(errors[:3]) or 'no reason given'}",
                               hint="replace the op TensorRT does not support, or use an "
                               "ONNX Runtime target")
    return network, parser


def parse_errors(parser: Any) -> list[str]:
    """The parser's errors as ``node NAME (OP): description``."""
    out = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        name, op = _call(err, "node_name"), _call(err, "node_operator")
        where = f"node {name!r}" if name else f"node #{_call(err, 'node')}"
        out.append(f"{where}{f' ({op})' if op else ''}: {_call(err, 'desc') or err}")
    return out


def _call(obj: Any, method: str) -> Any:
    fn = getattr(obj, method, None)
    try:
        return fn() if callable(fn) else None
    except Exception:  # older bindings lack some accessors or raise on them
        return None


def config_from_options(trt: Any, builder: Any, options: TrtBuildOptions,
                        timing_cache: bytes) -> Any:
    """A builder config: workspace limit, precision flags, optimisation profile, detailed
    layer names for the profiler, and the machine's timing cache loaded for reuse."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    for name in options.builder_flags:
        flag = getattr(trt.BuilderFlag, name, None)
        if flag is None:
            raise UnsupportedError(f"TensorRT {trt.__version__} has no builder flag {name}",
                                   hint="this precision needs a different TensorRT version")
        config.set_flag(flag)
    for name in options.cleared_flags:
        if (flag := getattr(trt.BuilderFlag, name, None)) is not None:
            config.clear_flag(flag)
    verbosity = getattr(getattr(trt, "ProfilingVerbosity", None), "DETAILED", None)
    if verbosity is not None:
        config.profiling_verbosity = verbosity
    if options.profiles:
        config.add_optimization_profile(optimization_profile(builder, options))
    cache = config.create_timing_cache(timing_cache)
    config.set_timing_cache(cache, ignore_mismatch=False)
    return config


def optimization_profile(builder: Any, options: TrtBuildOptions) -> Any:
    """One optimisation profile with every input's min/opt/max shape."""
    profile = builder.create_optimization_profile()
    for p in options.profiles:
        profile.set_shape(p.name, p.min, p.opt, p.max)
    return profile


def engine_bytes_from_network(builder: Any, network: Any, config: Any) -> bytes:
    """Build and serialize the engine."""
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UnsupportedError("TensorRT could not build an engine for this model (its log "
                               "above says why)", hint="run with -v for TensorRT's full log")
    return bytes(serialized)


def timing_cache_bytes(config: Any) -> bytes:
    """The config's timing cache (the loaded one plus what this build measured)."""
    cache = config.get_timing_cache()
    return bytes(cache.serialize()) if cache is not None else b""


def engine_from_bytes(trt: Any, logger: Any, data: bytes) -> tuple[Any, Any]:
    """(runtime, engine) deserialized from ``data``; the runtime must outlive the engine."""
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise DeviceError("TensorRT cannot deserialize the engine (it was built for another "
                          "GPU or TensorRT version)", hint="delete the engine cache folder "
                          "and build again")
    return runtime, engine
