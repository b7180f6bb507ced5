"""``deploypipe build``: load, (train,) prune, fine-tune, export, verify, profile, report.

Every stage is a call into the public API; the run directory receives ``dense.onnx``,
``pruned.onnx``, ``pruned.pt``, ``report.json`` and ``report.html``, each written atomically.

Under torchrun every rank runs the build: training, pruning and fine-tuning data-parallel
(DDP; pruning decisions broadcast from rank 0), while what writes or measures (exports,
checkpoint, latency table, profiling, report) runs once, on rank 0, and its result is
broadcast (``on_rank_zero``), so every rank returns the same report.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import BudgetError, InputError, VerificationError
from ..utils.files import check_output_path, write_json
from ..utils.log import get_logger
from .config import BuildConfig
from .quantize_stage import (add_to_report, build_precision, fp32_ratio, in_fp32_terms, quantize_pruned,
                             quantized_name, side_by_side, targets_for, timing_quantizer)
from .report import dense_vs_pruned, group_rows, now
from .run import Run, chain_keys

log = get_logger("build")
ROUND_EVAL_IMAGES = 2000


def build(config: BuildConfig) -> dict[str, Any]:
    """Run the whole pipeline; returns the report (also written as ``report.json``)."""
    from ..backends import backend_for_target
    from ..targets import load_target

    target = load_target(config.target)
    backend_for_target(target)  # no GPU for a GPU target: fail now, before any training
    check_output_path(config.out_dir, None if config.from_zoo else config.model)
    if config.onnx_input:
        from ..train import on_rank_zero
        from .build_onnx import build_onnx

        return on_rank_zero(build_onnx, config, target)
    return _TorchBuild(config, target).run()


class _TorchBuild:
    def __init__(self, config: BuildConfig, target):
        self.config = config
        self.target = target
        from ..train import is_rank_zero

        keys, inputs = stage_keys(config, target)
        self.run_dir = Run(Path(config.out_dir), keys=keys, inputs=inputs, writer=is_rank_zero())
        self.precision = build_precision(config.quantize, target)  # None: no quantize stage
        self.fp32_target, self.quant_target = targets_for(target, self.precision)
        self.round_to = config.round_to or self.quant_target.round_to
        self.report: dict[str, Any] = {}
        self.latency = None  # LatencyPlan, for a latency budget
        if self.precision and config.dataset is None:
            raise InputError(f"quantizing to {self.precision} calibrates and verifies on images, so it needs a dataset",
                             hint="pass --dataset")

    # -- stages ----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from ..train import on_rank_zero as once  # writes and measurements: rank 0, result broadcast

        cfg = self.config
        run = self.run_dir
        if cfg.from_zoo:
            with run.stage("data"):
                data = self._data(self._zoo_input())
            with run.stage("load"):
                model, arch, input_shape = self._zoo_model(data)
        else:
            with run.stage("load", f"loading {cfg.model}"):
                model, arch, input_shape = self._load()
            with run.stage("data"):
                data = self._data(input_shape)
            input_shape = input_shape or (data.input_shape if data else None)
            if input_shape is None:
                raise InputError(f"the input shape of {cfg.model} is unknown",
                                 hint="pass --dataset or --input-size and --in-channels")
        _check_target_shape(self.target, input_shape)
        if cfg.from_zoo and self._restore(model, "train", "trained.pt") is None:
            with run.stage("train", f"training {arch['name']} on {data.name} for {cfg.pretrain_epochs} epochs"):
                self._fit(model, data, cfg.pretrain_epochs, cfg.pretrain_lr)
                once(self._save_checkpoint, model, arch, input_shape, data, "trained.pt")
            run.record("train", ["trained.pt"])
        dense = run.cached("export_dense")
        if dense is None:
            with run.stage("export_dense"):
                dense = {"accuracy": self._accuracy(model, data),
                         "parity": once(self._export, model, "dense.onnx", input_shape)}
                once(self._save_checkpoint, model, arch, input_shape, data, "dense.pt")
            run.record("export_dense", ["dense.onnx", "dense.pt"], dense)
        teacher = copy.deepcopy(model).eval() if cfg.distill else None
        ctx, method = self._context(model, data, input_shape, teacher)
        if cfg.budget.kind == "latency":
            with run.stage("latency", f"measuring the latency table and calibrating {cfg.budget.describe()} "
                           f"on {self.target.name}"):
                self.latency = once(self._calibrate, ctx)
                ctx.latency = self.latency.result.allocator
                # a ratio of dense fp32 became one of the dense model quantized (see _calibrate)
                ctx.request = dataclasses.replace(ctx.request, budget=self.latency.budget)
        pruned = self._restore(model, "prune", "pruned_raw.pt")
        if pruned is None:
            with run.stage("prune", f"pruning with {cfg.method} ({cfg.importance}) to {cfg.budget.describe()}"):
                self._prune(ctx, method)
                once(self._save_checkpoint, model, arch, input_shape, data, "pruned_raw.pt")
            run.record("prune", ["pruned_raw.pt"], {"rounds": ctx.rounds, "oracle": ctx.oracle,
                                                    "losses": ctx.losses})
        else:
            ctx.pruner.refresh()
            ctx.rounds, ctx.oracle = pruned["rounds"], pruned["oracle"]
            ctx.losses = dict(pruned.get("losses", {}))
        finetune = not method.finetunes and cfg.epochs > 0 and data is not None
        from ..prune.methods.phase import finetune_loss

        ctx.losses["finetune"] = finetune_loss(ctx, finetune, method.finetunes)
        if finetune and self._restore(model, "finetune", "pruned.pt") is None:
            with run.stage("finetune", f"fine-tuning {cfg.epochs} epochs"
                           + (" with distillation" if teacher is not None else "")):
                self._fit(model, data, cfg.epochs, cfg.lr, teacher=teacher)
                once(self._save_checkpoint, model, arch, input_shape, data, "pruned.pt")
            run.record("finetune", ["pruned.pt"])
        final = run.cached("export_pruned")
        if final is None:
            with run.stage("export_pruned"):
                final = {"accuracy": self._accuracy(model, data),
                         "parity": once(self._export, model, "pruned.onnx", input_shape)}
                if not finetune:  # otherwise the fine-tuning stage wrote it
                    once(self._save_checkpoint, model, arch, input_shape, data, "pruned.pt")
            run.record("export_pruned", ["pruned.onnx"] + ([] if finetune else ["pruned.pt"]), final)
        quant = self._quantize(data) if self.precision else None
        with run.stage("profile", f"profiling dense and pruned models on {self.target.name}"):
            dense_prof, pruned_prof = once(self._profile)
            quantized = (quant, *once(self._profile_quantized)) if quant else None
        dense_acc, pruned_acc = dense["accuracy"], final["accuracy"]
        dense_parity, pruned_parity = dense["parity"], final["parity"]
        return once(self._write_report, ctx, method, dense_acc, pruned_acc, dense_parity, pruned_parity,
                    dense_prof, pruned_prof, quantized)

    def _zoo_input(self):
        """The input a zoo model is trained on: the dataset's, unless overridden."""
        cfg = self.config
        if cfg.in_channels is None and cfg.input_size is None:
            return None
        from ..models import model_info

        info = model_info(self.config.model[4:])
        size = cfg.input_size or info.default_input[1]
        return (cfg.in_channels or info.default_input[0], size, size)

    def _zoo_model(self, data):
        import torch

        from ..models import create_model

        with torch.random.fork_rng(devices=[]):  # seeded initialisation, global RNG untouched
            torch.manual_seed(self.config.seed)
            model = create_model(self.config.model[4:], num_classes=self.config.num_classes or data.num_classes,
                                 in_channels=data.in_channels, input_size=data.image_size)
        return model, dict(model.deploypipe_arch), data.input_shape

    def _load(self):
        from ..checkpoint import load_model

        cfg = self.config
        kwargs = {k: v for k, v in (("num_classes", cfg.num_classes), ("in_channels", cfg.in_channels))
                  if v is not None}
        loaded = load_model(cfg.model, arch=cfg.arch, arch_kwargs=kwargs or None, trust_model=cfg.trust_model)
        arch = {"name": loaded.arch, "kwargs": loaded.arch_kwargs} if loaded.arch else None
        shape = loaded.input_shape
        if cfg.input_size and shape:
            shape = (shape[0], cfg.input_size, cfg.input_size)
        return loaded.model, arch, shape

    def _data(self, input_shape):
        from ..data import load_dataset

        cfg = self.config
        if cfg.dataset is None:
            if cfg.from_zoo:
                raise InputError("building from the zoo trains the model first, so it needs a dataset",
                                 hint="pass --dataset, e.g. --dataset digits")
            log.info("no --dataset: pruning by weights only, no fine-tuning, no accuracy")
            return None
        size = input_shape[1:] if input_shape else None
        channels = input_shape[0] if input_shape else None
        return load_dataset(cfg.dataset, seed=cfg.seed, image_size=size, in_channels=channels, limit=cfg.limit)

    def _fit(self, model, data, epochs: int, lr: float, teacher=None):
        from ..train import DistillConfig, TrainConfig, fit

        cfg = self.config
        config = TrainConfig(epochs=epochs, batch_size=cfg.batch_size, lr=lr, seed=cfg.seed,
                             progress=cfg.progress, distill=DistillConfig() if teacher is not None else None,
                             augment=cfg.augment)
        return fit(model, data, config, teacher=teacher)

    def _train_config(self):
        from ..train import DistillConfig, TrainConfig

        cfg = self.config
        return TrainConfig(epochs=max(1, cfg.epochs), batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                           progress=cfg.progress, distill=DistillConfig() if cfg.distill else None,
                           augment=cfg.augment)

    def _accuracy(self, model, data) -> float | None:
        from ..train import evaluate

        return None if data is None else float(evaluate(model, data.test))

    def _export(self, model, name: str, input_shape) -> dict:
        from ..export import export_onnx, verify_onnx

        path = self.run_dir.path(name)
        export_onnx(model, path, input_shape=(1, *input_shape))
        tol = self.target.tolerances
        parity = verify_onnx(model, path, atol=tol.atol, rtol=tol.rtol)
        if self.config.verify:
            parity.check()
        return parity.to_dict()

    def _context(self, model, data, input_shape, teacher):
        from ..prune.methods import PruneContext, PruneRequest, create_method
        from ..prune.torch_groups import TorchPruner

        cfg = self.config
        method = create_method(cfg.method, cfg.method_params)
        request = PruneRequest(budget=cfg.budget, importance=cfg.importance, allocation=cfg.allocation,
                               round_to=self.round_to, max_ratio=cfg.max_ratio,
                               calibration_batches=cfg.calibration_batches, seed=cfg.seed,
                               params=dict(cfg.method_params))
        pruner = TorchPruner(model, (1, *input_shape))
        ctx = PruneContext(pruner, request, data=data, train_config=self._train_config(), teacher=teacher,
                           verify=cfg.verify, out_dir=self.run_dir.out_dir)
        return ctx, method

    def _calibrate(self, ctx):
        """Table and loop on the dense model; the calibrated allocator goes into ``ctx``. When the
        build quantizes, both time quantized models, on the target at that precision, and a
        latency ratio (of the dense fp32 model) becomes one of the dense model quantized."""
        from .latency import plan_latency

        scores = ctx.scores()
        groups = ctx.pruner.groups
        budget, prepare, conversion = self.config.budget, None, {}
        if self.precision:
            prepare = timing_quantizer(self.config, self.target, self.precision, ctx.pruner.analysis.model)
            budget, conversion = fp32_ratio(budget, ctx.pruner.analysis.model, (self.fp32_target, self.quant_target),
                                            prepare)
        try:
            plan = plan_latency(ctx.pruner.analysis, [scores.get(g.id, np.zeros(g.width)) for g in groups],
                                [ctx.pruner.is_prunable(g) for g in groups], self.quant_target, budget,
                                round_to=self.round_to, max_ratio=self.config.max_ratio,
                                options=self.config.latency, prepare=prepare)
        except BudgetError as exc:
            raise in_fp32_terms(exc, conversion) from None
        ctx.latency = plan.result.allocator
        return dataclasses.replace(plan, conversion=conversion)

    def _prune(self, ctx, method) -> None:
        cfg = self.config
        if ctx.data is not None and ctx.on_round is None:
            ctx.on_round = _round_accuracy
        method.run(ctx)
        if cfg.verify and ctx.oracle is not None and not ctx.oracle["passed"]:
            raise VerificationError(f"the PyTorch-pruned model differs from the ONNX-shrunk original by "
                                    f"{ctx.oracle['max_abs']:.3g}", hint="please report this model")

    def _save_checkpoint(self, model, arch, input_shape, data, name: str) -> None:
        from ..checkpoint import save_checkpoint

        meta = {"input_shape": list(input_shape), "written_by": "deploypipe build",
                "dataset": data.name if data is not None else None}
        save_checkpoint(self.run_dir.path(name), model, arch=arch["name"] if arch else None,
                        arch_kwargs=arch["kwargs"] if arch else {}, metadata=meta)

    def _restore(self, model, stage: str, name: str) -> dict | None:
        """Load the weights (and widths) a finished stage saved; None if it must run."""
        data = self.run_dir.cached(stage)
        if data is None:
            return None
        import torch

        from ..models.resize import resize_to_state_dict

        state = torch.load(self.run_dir.path(name), map_location="cpu", weights_only=True)["state_dict"]
        resize_to_state_dict(model, state)
        model.load_state_dict(state)
        return data

    def _profile(self):
        from ..measure.profile import profile_onnx

        it = self.config.profile_iterations
        dense = profile_onnx(self.run_dir.path("dense.onnx"), self.fp32_target, iterations=it)
        pruned = profile_onnx(self.run_dir.path("pruned.onnx"), self.fp32_target, iterations=it)
        return dense, pruned

    def _quantize(self, data) -> dict[str, Any]:
        """The quantize stage (reused from an earlier run when its inputs are unchanged)."""
        from ..train import on_rank_zero

        quant = self.run_dir.cached("quantize")
        if quant is None:
            with self.run_dir.stage("quantize", f"quantizing pruned.onnx to {self.precision}"):
                quant = on_rank_zero(quantize_pruned, self.run_dir.out_dir, self.config, data, self.target,
                                     self.precision)
            self.run_dir.record("quantize", [quant["file"]], quant)
        return quant

    def _profile_quantized(self):
        """The quantized model's profile on the target at its precision, and the three models
        timed interleaved."""
        from ..measure.profile import profile_onnx

        path = self.run_dir.path(quantized_name(self.precision))
        profile = profile_onnx(path, self.quant_target, iterations=self.config.profile_iterations)
        return profile, side_by_side(self.run_dir.out_dir, self.quant_target, self.precision)

    def _write_report(self, ctx, method, dense_acc, pruned_acc, dense_parity, pruned_parity,
                      dense_prof, pruned_prof, quantized=None) -> dict[str, Any]:
        from ..graph import analyse, load_onnx
        from ..measure.fingerprint import hardware_fingerprint
        from ..report import try_write_html_report
        from .engines import hand_over_engine

        cfg = self.config
        dense_a = analyse(load_onnx(self.run_dir.path("dense.onnx")))
        pruned_a = analyse(load_onnx(self.run_dir.path("pruned.onnx")))
        report = {
            "deploypipe_version": __version__, "created": now(), "command": cfg.command,
            "target": {"name": self.target.name, "backend": dense_prof.backend,
                       "providers": list(dense_prof.providers), "batch": dense_prof.batch,
                       "precision": self.target.precision, "timing": dense_prof.timing,
                       "fingerprint": hardware_fingerprint().to_dict()},
            "method": {"name": cfg.method, "importance": cfg.importance,
                       "params": {k: v for k, v in method.values.items()}, "allocation": cfg.allocation,
                       "round_to": self.round_to, "distill": cfg.distill, "losses": dict(ctx.losses)},
            "budget": cfg.budget.to_dict(),
            "dataset": cfg.dataset,
            **dense_vs_pruned(dense_a, pruned_a, dense_acc, pruned_acc, dense_prof, pruned_prof),
            "groups": group_rows(ctx.pruner, ctx.dense_widths, ctx.dense_reasons),
            "rounds": ctx.rounds,
            "verification": {"torch_vs_onnx_max_abs": max(dense_parity["max_abs"], pruned_parity["max_abs"]),
                             "oracle_max_abs": ctx.oracle["max_abs"] if ctx.oracle else None,
                             "passed": bool(dense_parity["passed"] and pruned_parity["passed"]
                                            and (ctx.oracle is None or ctx.oracle["passed"]))},
            "layers": {"dense": [l.to_dict() for l in dense_prof.layers],
                       "pruned": [l.to_dict() for l in pruned_prof.layers]},
            "stages": self.run_dir.stages,
            "artifacts": ["dense.onnx", "dense.pt", "pruned.onnx", "pruned.pt", "report.json"],
        }
        for prof, stem in ((dense_prof, "dense"), (pruned_prof, "pruned")):
            report["artifacts"][-1:-1] = hand_over_engine(prof, self.run_dir.out_dir, stem)
        delivered, delivered_prof = "pruned.onnx", pruned_prof  # the model the budget is judged on
        if quantized is not None:  # (result, profile, interleaved timing)
            add_to_report(report, self.run_dir.out_dir, *quantized)
            delivered, delivered_prof = quantized[0]["file"], quantized[1]
        if self.latency is not None:
            final = self.latency.check(self.run_dir.path("dense.onnx"), self.run_dir.path(delivered))
            report.update(self.latency.report(self.run_dir.out_dir, delivered_prof.latency_ms, final))
            report["latency_result"]["final_widths_match_loop"] = bool(
                list(ctx.pruner.widths()) == list(self.latency.result.chosen.widths))
            report["artifacts"].insert(-1, "latency_table.json")
        report["artifacts"].append("report.html")
        write_json(self.run_dir.path("report.json"), report)
        try_write_html_report(self.run_dir.out_dir)
        return report


def stage_keys(config: BuildConfig, target) -> tuple[dict[str, str], dict[str, Any]]:
    """What each stage's result depends on: the model file's content, the data, the versions,
    and the options of that stage and the stages before it (not where results go or how
    they are shown)."""
    from ..quantize.config import scheme_for
    from ..utils.files import sha256_file

    path = Path(config.model)
    precision = build_precision(config.quantize, target)
    c = dataclasses.asdict(config)
    pick = lambda *names: {n: c[n] for n in names}  # noqa: E731
    inputs = {"model": config.model, "model_sha256": sha256_file(path) if path.is_file() else None,
              "dataset": config.dataset, "deploypipe": __version__}
    base = {**inputs, **pick("seed", "limit", "arch", "num_classes", "in_channels", "input_size", "trust_model",
                             "batch_size", "augment")}
    keys = chain_keys(base, [
        ("train", pick("pretrain_epochs", "pretrain_lr")),
        ("export_dense", {"tolerances": target.to_dict()["tolerances"], "verify": config.verify}),
        ("prune", {**pick("method", "method_params", "importance", "allocation", "budget", "round_to", "max_ratio",
                          "calibration_batches", "distill", "latency"),
                   # methods other than one-shot train while they prune, with the fine-tuning options
                   **({} if config.method == "oneshot" else pick("epochs", "lr")),
                   # a latency budget is measured on the quantized models
                   **({"quantize": precision, **pick("keep_fp32")} if config.budget.kind == "latency" else {}),
                   "rounded_to": config.round_to or targets_for(target, precision)[1].round_to,
                   "target": target.to_dict()}),
        ("finetune", pick("epochs", "lr", "distill")),
        ("export_pruned", {}),
        ("quantize", {"precision": precision, **pick("keep_fp32", "calibration_batches", "verify"),
                      "scheme": scheme_for(target)}),
    ])
    return keys, inputs


def _check_target_shape(target, input_shape) -> None:
    """A profile's ``input_shape`` that the model cannot take is refused before training and
    the latency table, not at the profile step minutes later."""
    if target.input_shape and input_shape and tuple(target.input_shape) != tuple(input_shape):
        raise InputError(f"target {target.name!r} sets input_shape {list(target.input_shape)}, but the "
                         f"model takes {list(input_shape)}",
                         hint="leave input_shape out of the profile (the model's own is used) or match it")


def _round_accuracy(ctx, entry: dict) -> None:
    """Record the test accuracy after a pruning round, before fine-tuning, on the first
    ``ROUND_EVAL_IMAGES`` test images (the report plots accuracy against MACs per round)."""
    from torch.utils.data import Subset

    from ..train import evaluate

    part = Subset(ctx.data.test, range(min(len(ctx.data.test), ROUND_EVAL_IMAGES)))
    entry["accuracy"] = float(evaluate(ctx.model, part))
    entry["accuracy_images"] = len(part)
