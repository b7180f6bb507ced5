"""``deploypipe export``: a PyTorch model to ONNX, checked against ONNX Runtime."""
from __future__ import annotations

import argparse

from .args import add_model_loading, non_negative_float, positive_int


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a PyTorch model to ONNX and check it with ONNX Runtime",
        description="Export model.pt to ONNX (torch parameter names kept as initializer names, "
        "BatchNorm kept as its own node), then compare ONNX Runtime with PyTorch on random "
        "inputs and fail beyond tolerance.")
    p.add_argument("model", help="model.pt: a deploypipe checkpoint, a state_dict (with --arch), "
                   "a TorchScript archive or a torch.export program")
    p.add_argument("-o", "--output", required=True, metavar="ONNX", help="where to write the ONNX file")
    p.add_argument("--opset", type=positive_int, default=17, help="ONNX opset (default: 17)")
    p.add_argument("--no-dynamic-batch", dest="dynamic_batch", action="store_false",
                   help="fix the batch size to the one in --input-shape")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the ONNX Runtime vs PyTorch comparison")
    p.add_argument("--atol", type=non_negative_float, default=1e-4, help="absolute tolerance (default: 1e-4)")
    p.add_argument("--rtol", type=non_negative_float, default=1e-3, help="relative tolerance (default: 1e-3)")
    add_model_loading(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import load_model
    from ..export import export_and_verify, export_onnx
    from ..utils.files import check_output_path

    check_output_path(args.output, args.model)
    loaded = load_model(args.model, arch=args.arch, arch_kwargs=_arch_kwargs(args),
                        trust_model=args.trust_model)
    name, shape = _input_shape(args.input_shape, loaded)
    common = dict(input_shape=shape, opset=args.opset, dynamic_batch=args.dynamic_batch,
                  input_name=name)
    if args.verify:
        info, report = export_and_verify(loaded.model, args.output, atol=args.atol,
                                         rtol=args.rtol, **common)
    else:
        info, report = export_onnx(loaded.model, args.output, **common), None
    print(f"exported {args.model} -> {info.path} in {info.seconds:.2f} s: opset {info.opset}, "
          f"inputs {_shapes(info.input_shapes)}, outputs {_shapes(info.output_shapes)}")
    if report is not None:
        print(f"ONNX Runtime vs PyTorch: {report.summary()}")
    else:
        print("ONNX Runtime vs PyTorch: not checked (--no-verify)")
    print(f"wrote {info.path.resolve()}")
    return 0


def _arch_kwargs(args: argparse.Namespace) -> dict[str, int] | None:
    kw = {k: v for k, v in (("num_classes", args.num_classes), ("in_channels", args.in_channels))
          if v is not None}
    return kw or None


def _input_shape(given: dict[str, tuple[int, ...]] | None, loaded) -> tuple[str, tuple[int, ...]]:
    """(input name, N,C,H,W): from --input-shape, else the checkpoint, else the zoo default."""
    from ..errors import InputError

    if given:
        if len(given) > 1:
            raise InputError("--input-shape names more than one input",
                             hint="deploypipe exports models with one image input")
        name, shape = next(iter(given.items()))
        return name or "input", shape
    sample = loaded.input_shape or _zoo_default(loaded.arch)
    if sample is None:
        raise InputError("the checkpoint does not say the model's input shape",
                         hint="give it with --input-shape 1x3x224x224")
    return "input", (1, *sample)


def _zoo_default(arch: str | None) -> tuple[int, ...] | None:
    if not arch:
        return None
    from ..models import list_models, model_info

    return tuple(model_info(arch).default_input) if arch in list_models(include_test=True) else None


def _shapes(shapes: dict) -> str:
    return ", ".join(f"{n} [{', '.join(str(d) for d in s)}]" for n, s in shapes.items())
