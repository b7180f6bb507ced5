"""Fixtures of the backend tests: small exported models, and a fake ``tensorrt`` module that
records what the TensorRT backend asks of it (TensorRT cannot be installed here).

The fake follows the documented Python API of TensorRT 10 and 11 where the backend touches
it: ``Builder``, ``create_network(flags)``, ``OnnxParser.parse_from_file``, builder config
flags, memory pools, optimisation profiles and timing caches, ``build_serialized_network``,
``IProfiler``. TensorRT 11's ``BuilderFlag`` has no FP16/INT8 members, as in the real one.
"""
from __future__ import annotations

import json
import sys
import types
from types import SimpleNamespace

import pytest


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory):
    """test_resnet_cifar exported with a dynamic batch, and its checkpoint beside it."""
    from deploypipe.checkpoint import save_checkpoint
    from deploypipe.export import export_onnx
    from deploypipe.models import create_model

    folder = tmp_path_factory.mktemp("tiny")
    model = create_model("test_resnet_cifar")
    export_onnx(model, folder / "tiny.onnx", input_shape=(1, 3, 32, 32))
    save_checkpoint(folder / "tiny.pt", model)
    return folder / "tiny.onnx"


@pytest.fixture(scope="session")
def fixed_onnx(tmp_path_factory):
    from deploypipe.export import export_onnx
    from deploypipe.models import create_model

    path = tmp_path_factory.mktemp("fixed") / "fixed.onnx"
    export_onnx(create_model("test_resnet_cifar"), path, input_shape=(4, 3, 32, 32),
                dynamic_batch=False)
    return path


class _Logger:
    VERBOSE, INFO, WARNING, ERROR = 0, 1, 2, 3

    def __init__(self, severity=2):
        self.severity = severity


class _TimingCache:
    def __init__(self, data: bytes):
        self.data = bytes(data)

    def serialize(self) -> bytes:
        return self.data + b"|measured"


class _Profile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, min, opt, max):
        self.shapes[name] = (tuple(min), tuple(opt), tuple(max))


class _Config:
    def __init__(self):
        self.flags, self.cleared, self.pools, self.profiles = set(), set(), {}, []
        self.profiling_verbosity = None
        self.timing_loaded = None
        self.timing = None

    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.cleared.add(flag)

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool] = size

    def add_optimization_profile(self, profile):
        self.profiles.append(profile.shapes)
        return len(self.profiles) - 1

    def create_timing_cache(self, data):
        self.timing_loaded = bytes(data)
        return _TimingCache(data)

    def set_timing_cache(self, cache, ignore_mismatch):
        self.timing = cache
        return True

    def get_timing_cache(self):
        return self.timing


class _Network:
    def __init__(self, flags):
        self.flags = flags


class _Error:
    def __init__(self, name, op, desc):
        self._name, self._op, self._desc = name, op, desc

    def node_name(self):
        return self._name

    def node_operator(self):
        return self._op

    def desc(self):
        return self._desc

    def node(self):
        return 3


class _Context:
    """An execution context whose 'engine' writes batch * 1.0 into every output element
    and reports two layers to an attached profiler."""

    def __init__(self, engine):
        self.engine, self.shapes, self.addresses, self.runs = engine, {}, {}, 0
        self.profiler = None
        self.fail = False
        self.nvtx_verbosity = "DETAILED"  # an engine built DETAILED starts its contexts so

    def set_input_shape(self, name, shape):
        low, high = self.engine.batch_range
        if not low <= shape[0] <= high:
            return False
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        batch = self.shapes["input"][0]
        return (batch, 10) if name == "logits" else self.shapes[name]

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream):
        if self.fail:
            return False
        self.runs += 1
        out = self.engine.memory[self.addresses["logits"]]
        out.fill_(float(self.shapes["input"][0]))
        if self.profiler is not None:
            self.profiler.report_layer_time("/conv1/Conv + /bn1/BatchNormalization", 0.25)
            self.profiler.report_layer_time("/fc/Gemm", 0.05)
        return True


class _Engine:
    def __init__(self, memory, batch_range=(1, 16)):
        self.memory, self.batch_range, self.contexts = memory, batch_range, []
        self.num_io_tensors = 2

    def get_tensor_name(self, i):
        return ["input", "logits"][i]

    def get_tensor_mode(self, name):
        return "INPUT" if name == "input" else "OUTPUT"

    def get_tensor_shape(self, name):
        return (-1, 3, 32, 32) if name == "input" else (-1, 10)

    def get_tensor_dtype(self, name):
        return "float32"

    def create_execution_context(self):
        self.contexts.append(_Context(self))
        return self.contexts[-1]


class FakeTrt(types.ModuleType):
    """A stand-in for ``import tensorrt`` of a given version."""

    def __init__(self, version: str):
        super().__init__("tensorrt")
        self.__version__ = version
        major = int(version.split(".")[0])
        self.builds: list[dict] = []
        self.parsed: list[str] = []
        self.parse_failures: list[_Error] = []
        self.Logger = _Logger
        self.NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=0 if major >= 11 else 1)
        flags = {"TF32": "TF32"} if major >= 11 else {"FP16": "FP16", "INT8": "INT8", "TF32": "TF32"}
        self.BuilderFlag = SimpleNamespace(**flags)
        self.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
        self.ProfilingVerbosity = SimpleNamespace(DETAILED="DETAILED", NONE="NONE",
                                                  LAYER_NAMES_ONLY="LAYER_NAMES_ONLY")
        self.IProfiler = type("IProfiler", (), {"__init__": lambda self: None})
        self.TensorIOMode = SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
        self.nptype = lambda dtype: {"float32": "float32", "float16": "float16"}[dtype]
        self.memory: dict = {}  # device pointer -> tensor, filled by the fake CUDA helpers
        self.engines: list = []
        trt = self

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, data):
                if data == b"corrupt":
                    return None
                trt.engines.append(_Engine(trt.memory))
                return trt.engines[-1]

        self.Runtime = Runtime

        class Builder:
            def __init__(self, logger):
                self.logger = logger

            def create_network(self, flags=0):
                return _Network(flags)

            def create_builder_config(self):
                return _Config()

            def create_optimization_profile(self):
                return _Profile()

            def build_serialized_network(self, network, config):
                record = {"network_flags": network.flags, "flags": sorted(config.flags),
                          "cleared": sorted(config.cleared), "pools": config.pools,
                          "profiles": [{k: [list(s) for s in v] for k, v in p.items()}
                                       for p in config.profiles],
                          "verbosity": config.profiling_verbosity,
                          "timing_loaded": config.timing_loaded.decode(),
                          "source": trt.parsed[-1]}
                trt.builds.append(record)
                return json.dumps(record).encode()

        class OnnxParser:
            def __init__(self, network, logger):
                self.num_errors = 0

            def parse_from_file(self, path):
                trt.parsed.append(str(path))
                self.num_errors = len(trt.parse_failures)
                return not trt.parse_failures

            def get_error(self, i):
                return trt.parse_failures[i]

        self.Builder, self.OnnxParser = Builder, OnnxParser

    def fail_parse(self, name: str, op: str, desc: str) -> None:
        self.parse_failures.append(_Error(name, op, desc))


@pytest.fixture
def fake_trt(monkeypatch):
    """``make(version)`` installs a FakeTrt as ``sys.modules['tensorrt']`` for one test."""

    def make(version: str = "10.8.0.43") -> FakeTrt:
        module = FakeTrt(version)
        monkeypatch.setitem(sys.modules, "tensorrt", module)
        return module

    return make
