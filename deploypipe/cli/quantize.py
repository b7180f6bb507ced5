"""``deploypipe quantize model.onnx --dataset SPEC -o out.onnx``: int8 (Q/DQ) or fp16, verified."""
from __future__ import annotations

import argparse

from .args import add_dataset, add_json_out, add_target, positive_int, seed


def add_parser(sub) -> None:
    p = sub.add_parser(
        "quantize", help="quantize an ONNX model to int8 (Q/DQ) or fp16, calibrated and verified on a dataset",
        description="Static post-training quantization with ONNX Runtime's tools: int8 as a Q/DQ graph "
        "(activation ranges calibrated on training images, one weight scale per output channel) or fp16; "
        "then the result is compared with the fp32 model on held-out test images (top-1 agreement and "
        "largest error per output, against a tolerance for that precision) and written only if it passes. "
        "Images are normalised as deploypipe's datasets are (per-channel mean and std of the training split).")
    p.add_argument("model", help="ONNX file with one (N, C, H, W) float input (never modified)")
    p.add_argument("-o", "--output", required=True, metavar="ONNX", help="where to write the quantized model")
    add_dataset(p, input_size=None)  # images for calibration and verification
    p.add_argument("--precision", choices=("int8", "fp16"), default="int8", help="default: int8")
    # the target only chooses the Q/DQ scheme (TensorRT's or ONNX Runtime's): its overrides
    # (--fp16/--int8/--fp32, --shapes, --timing-cache) would be ignored, and --int8 overrode --precision
    add_target(p, overrides=False, help_="the profile whose quantization scheme to follow (default: cpu; "
               "see `deploypipe list targets`)")
    p.add_argument("--calibration-batches", type=positive_int, default=8,
                   help="training batches the int8 activation ranges are calibrated on (default 8)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="calibration batch size (default 64)")
    p.add_argument("--keep-fp32", metavar="NODES", default="",
                   help="comma-separated Conv/Gemm node names to keep in fp32 (or first, last)")
    p.add_argument("--max-auto-keep", type=int, default=3, metavar="N",
                   help="when the result misses its tolerance, keep up to N more layers in fp32, the ones "
                   "that help most (default 3; 0: none)")
    p.add_argument("--verify-images", type=positive_int, default=2000, metavar="N",
                   help="held-out test images to compare on (default 2000)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--no-verify", action="store_true", help="write the result even if it misses its tolerance")
    add_json_out(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..quantize import QuantizeConfig, model_size, quantize_file, scheme_for
    from ..targets import load_target
    from ..data.registry import dataset_path
    from ..utils.files import check_result_and_json, write_json

    check_result_and_json(args.output, args.json, args.model, dataset_path(args.dataset))
    config = QuantizeConfig(precision=args.precision, calibration_batches=args.calibration_batches,
                            batch_size=args.batch_size, scheme=scheme_for(load_target(args.target)),
                            keep_fp32=tuple(n.strip() for n in args.keep_fp32.split(",") if n.strip()),
                            max_auto_keep=args.max_auto_keep, verify_images=args.verify_images, seed=args.seed)
    result = quantize_file(args.model, args.output, args.dataset, config, check=not args.no_verify,
                           limit=args.limit)
    before, after = model_size(args.model), model_size(args.output)
    v = result.verification
    accuracy = (f"; accuracy {v.accuracy_fp32:.2%} -> {v.accuracy_quantized:.2%}"
                if v.accuracy_fp32 is not None else "")
    print(f"{result.sentence()}{accuracy}")
    print(f"{before / 1e6:.2f} MB -> {after / 1e6:.2f} MB on disk; wrote {args.output}")
    if args.json:
        write_json(args.json, {"input": args.model, "output": args.output, "size_bytes": before,
                               "quantized_size_bytes": after, **result.to_dict()})
    return 0 if result.passed else 1
