"""What kind of model file a path holds, decided from its bytes (never by running it);
paths that cannot be models are refused with a sentence that says what they are."""
from __future__ import annotations

import zipfile
from pathlib import Path

from ..errors import InputError

TORCH_SAVE, TORCHSCRIPT, TORCH_EXPORT = "torch.save", "torchscript", "torch.export"

_NOT_MODELS = {
    ".onnx": "an ONNX model; load_model reads PyTorch files, and ONNX files go to the commands that "
             "take them (deploypipe profile, shrink)",
    ".engine": "a TensorRT engine, not a PyTorch model", ".plan": "a TensorRT engine, not a PyTorch model",
    ".trt": "a TensorRT engine, not a PyTorch model",
    ".npz": "a numpy archive (data, not a model)", ".npy": "a numpy array, not a model",
    ".json": "a JSON file, not a model", ".toml": "a TOML file, not a model", ".yaml": "a YAML file, not a model",
    ".txt": "a text file, not a model", ".h5": "a Keras/HDF5 model", ".keras": "a Keras model",
    ".pb": "a TensorFlow graph", ".tflite": "a TensorFlow Lite model",
    ".safetensors": "a safetensors file, which deploypipe does not read yet",
}


def sniff(path: Path) -> str:
    """One of TORCH_SAVE, TORCHSCRIPT, TORCH_EXPORT; an InputError for anything else."""
    _check_exists(path)
    what = _NOT_MODELS.get(path.suffix.lower())
    if what:
        raise InputError(f"{str(path)!r} is {what}",
                         hint="give a PyTorch model file (.pt/.pth checkpoint or state_dict, TorchScript, or .pt2)")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":
        return TORCH_SAVE  # legacy (pre-1.6) torch.save, or not a PyTorch file: torch.load tells
    return _zip_kind(path)


def _check_exists(path: Path) -> None:
    if not path.exists():
        if str(path).startswith("zoo:"):
            raise InputError(f"{str(path)!r} names an untrained zoo architecture, not a model file",
                             hint=f"train it first (deploypipe train --arch {str(path)[4:]} --dataset ... -o "
                                  "model.pt) or let build train it (deploypipe build zoo:NAME --dataset ...)")
        raise InputError(f"model file {str(path)!r} does not exist", hint="check the path")
    if path.is_dir():
        raise InputError(f"{str(path)!r} is a folder, not a model file", hint="give the path of the .pt file")
    if path.stat().st_size == 0:
        raise InputError(f"model file {str(path)!r} is empty", hint="save the model again")


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise InputError(f"model file {str(path)!r} is truncated or corrupt ({exc})",
                         hint="save or copy the model again") from None
    inner = {n.split("/", 1)[1] if "/" in n else n for n in names}
    if "archive_format" in inner or any(n.startswith("models/") and n.endswith(".json") for n in inner):
        return TORCH_EXPORT
    if "constants.pkl" in inner and any(n.startswith("code/") for n in inner):
        return TORCHSCRIPT
    if "data.pkl" in inner:
        return TORCH_SAVE
    raise InputError(f"{str(path)!r} is a zip archive but not a PyTorch file",
                     hint="give a file written by torch.save, torch.jit.save or torch.export.save")
