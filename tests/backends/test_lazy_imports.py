"""Heavy GPU libraries load only when an engine is built: importing deploypipe, its backend
modules and the CLI (``--help``) must not import tensorrt or a CUDA binding."""
from __future__ import annotations

import subprocess
import sys
import textwrap

# A meta-path finder that lets Python *find* the blocked modules (as if installed) but
# records and fails any attempt to *execute* them, i.e. to import them.
_GUARD = textwrap.dedent("""
    import importlib.abc, importlib.machinery, sys
    ATTEMPTS = []
    class _Fail(importlib.abc.Loader):
        def create_module(self, spec):
            return None
        def exec_module(self, module):
            ATTEMPTS.append(module.__name__)
            raise ImportError(module.__name__ + " imported at module import time")
    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorrt", "pycuda", "cuda"):
                return importlib.machinery.ModuleSpec(name, _Fail())
            return None
    sys.meta_path.insert(0, _Block())
""")

_CHECK = textwrap.dedent("""
    import deploypipe
    import deploypipe.backends
    import deploypipe.backends.tensorrt, deploypipe.backends.trt_engine
    import deploypipe.backends.torch_cuda, deploypipe.backends.chooser
    import deploypipe.backends.compare, deploypipe.backends.ort
    from deploypipe.backends import list_backends
    from deploypipe.cli import main
    listed = {spec.name: reason for spec, reason in list_backends()}
    codes = [main(["--help"]), main(["compare", "--help"]), main(["profile", "--help"])]
    assert ATTEMPTS == [], ATTEMPTS
    assert "tensorrt" not in sys.modules
    print("OK", codes, sorted(listed))
""")


def test_no_gpu_library_is_imported_by_import_or_help():
    proc = subprocess.run([sys.executable, "-c", _GUARD + _CHECK], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last == "OK [0, 0, 0] ['onnxruntime', 'tensorrt', 'torch']", last


def test_the_guard_catches_an_eager_import():
    """The check above can fail: a module that imports tensorrt at the top is caught."""
    proc = subprocess.run([sys.executable, "-c", _GUARD + "import tensorrt"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "imported at module import time" in proc.stderr
