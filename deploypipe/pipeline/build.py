"""``deploypipe build``: load, (train,) prune, fine-tune, export, verify, profile, report.

From --latency-ratio to widths
    ``cli/build.py`` reads ``--latency-ratio 0.6`` as ``Budget.parse("latency", "0.6")``, a
    :class:`~deploypipe.prune.budget.LatencyRatioBudget` (``prune/budget.py``). Here,
    ``_context`` checks that the method accepts that budget type before any work, and
    ``_latency_stage`` (the budget ``needs_latency_table``) calls ``plan_latency``
    (``pipeline/latency.py``): it measures the dense model's per-group latency table and runs
    ``latency_loop`` (``hw/latency_loop.py``), which allocates with the knapsack of
    ``hw/latency_allocator.py``, builds and times each candidate on the target, and returns a frozen ``LoopResult`` whose
    ``widths`` were measured to meet the budget. Those widths become ``ctx.planned``; the
    method's allocation (``LatencyBudget.allocate``) returns them unchanged, and the method only
    chooses which channels fill them, by its own scores. Nothing recomputes the widths.

Every stage is a call into the public API; the run directory receives ``dense.onnx``,
``pruned.onnx``, ``pruned.pt``, ``report.json`` and ``report.html``, each written atomically.
The build reads a :class:`~.config.BuildConfig` and returns a :class:`~deploypipe.report.schema.BuildReport`.

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
from ..utils.files import check_output_path
from ..utils.log import get_logger
from ..report.schema import BuildReport, LatencyOutcome, MethodSummary, Verification
from .config import BuildConfig
from .quantize_stage import (build_precision, fp32_ratio, in_fp32_terms, quantize_pruned, quantized_name,
                             require_data,
                             side_by_side, targets_for, timing_quantizer, with_quantized)
from .build_report import assemble, group_rows, latency_outcome, model_columns
from .run import Run, chain_keys

log = get_logger("build")
ROUND_EVAL_IMAGES = 2000
ROUND_EVAL_POINTS = 16  # rounds evaluated: about one per 1/16 of the dense MACs removed, and the last


def build(config: BuildConfig) -> BuildReport:
    """Run the whole pipeline; returns the report (also written as ``report.json``)."""
    return build_with_model(config)[0]


def build_with_model(config: BuildConfig) -> tuple[BuildReport, Any]:
    """The pipeline, returning the report and the pruned module (None for an ONNX input)."""
    from ..backends import backend_for_target
    from ..targets import load_target

    target = load_target(config.target)
    backend_for_target(target)  # no GPU for a GPU target: fail now, before any training
    from ..backends.ort import check_threads

    check_threads(target)  # the same for a thread count ONNX Runtime cannot start
    on_disk = not config.model.from_zoo and config.model.module is None
    from ..data.registry import dataset_path

    check_output_path(config.out_dir, config.model.path if on_disk else None, dataset_path(config.data.dataset))
    if config.model.onnx_input:
        from ..train import on_rank_zero
        from .build_onnx import build_onnx

        return on_rank_zero(build_onnx, config, target), None
    torch_build = _TorchBuild(config, target)
    return torch_build.run(), torch_build.model


@dataclasses.dataclass
class _Subject:
    """The model being built (pruned in place), what rebuilds it from a checkpoint, its data."""

    model: Any  # torch.nn.Module
    arch: dict[str, Any] | None  # {"name", "kwargs"} when the architecture is known
    input_shape: tuple[int, ...]  # (C, H, W)
    data: Any  # Dataset, or None: pruning by weights only


class _TorchBuild:
    def __init__(self, config: BuildConfig, target):
        self.config = config
        self.target = target
        from ..train import is_rank_zero

        keys, inputs = stage_keys(config, target)
        self.run_dir = Run(config.out_dir, keys=keys, inputs=inputs, writer=is_rank_zero())
        self.precision = build_precision(config.quantize.precision, target)  # None: no quantize stage
        self.fp32_target, self.quant_target = targets_for(target, self.precision)
        self.round_to = config.prune.round_to or self.quant_target.round_to
        self.latency = None  # LatencyPlan, for a latency budget
        self._stored_normalisation = None  # (mean, std) a loaded checkpoint says its model was trained with
        self.model = None  # the module being built, once loaded
        require_data(self.precision, config)
        from ..prune.importance import check_allocation

        check_allocation(config.prune.allocation, config.prune.importance)  # before any training
        _require_training(config)

    # -- stages ----------------------------------------------------------------------
    def run(self) -> BuildReport:
        from ..train import on_rank_zero as once  # writes and measurements: rank 0, result broadcast

        subject = self._load_stage()
        self.model = subject.model  # pruned in place; the caller of build_with_model gets it
        self._train_stage(subject)
        dense = self._export_stage(subject, "dense", checkpoint=True)
        teacher = copy.deepcopy(subject.model).eval() if self.config.train.distill else None
        ctx, method = self._context(subject.model, subject.data, subject.input_shape, teacher)
        self._latency_stage(ctx)
        self._prune_stage(subject, ctx, method)
        finetuned = self._finetune_stage(subject, ctx, method, teacher)
        pruned = self._export_stage(subject, "pruned", checkpoint=not finetuned)  # else fine-tuning wrote it
        quant = self._quantize(subject.data) if self.precision else None
        profiles, quantized, speed = self._profile_stage(quant)
        return once(self._write_report, ctx, method, (dense, pruned), profiles, quantized, speed)

    def _load_stage(self) -> _Subject:
        """The model and its data (a zoo model's architecture follows its dataset's images)."""
        cfg, run = self.config, self.run_dir
        if cfg.model.from_zoo:
            with run.stage("data"):
                data = self._data(self._zoo_input())
            with run.stage("load"):
                model, arch, input_shape = self._zoo_model(data)
        else:
            with run.stage("load", f"loading {cfg.model.path}"):
                model, arch, input_shape = self._load()
            with run.stage("data"):
                data = self._data(input_shape)
            input_shape = input_shape or (data.input_shape if data else None)
            if input_shape is None:
                raise InputError(f"the input shape of {cfg.model.path} is unknown",
                                 hint="pass --dataset or --input-size and --in-channels")
        _check_target_shape(self.target, input_shape)
        if data is not None:
            from ..train import check_model_on_data

            check_model_on_data(model, data, scored_by_eval_fn=cfg.data.eval_fn is not None)
        return _Subject(model, arch, input_shape, data)

    def _train_stage(self, subject: _Subject) -> None:
        """A zoo model is trained on the dataset first (reused from an earlier run if it can be)."""
        from ..train import on_rank_zero as once

        train = self.config.train
        if not self.config.model.from_zoo or self._restore(subject.model, "train", "trained.pt") is not None:
            return
        with self.run_dir.stage("train", f"training {subject.arch['name']} on {subject.data.name} for "
                                f"{train.pretrain_epochs} epochs"):
            self._fit(subject.model, subject.data, train.pretrain_epochs, train.pretrain_lr)
            once(self._save_checkpoint, subject, "trained.pt")
        self.run_dir.record("train", ["trained.pt"])

    def _export_stage(self, subject: _Subject, stem: str, checkpoint: bool) -> dict[str, Any]:
        """``STEM.onnx`` (and ``STEM.pt``) written and verified: {"accuracy", "parity"}."""
        from ..train import on_rank_zero as once

        stage = f"export_{stem}"
        result = self.run_dir.cached(stage)
        if result is None:
            with self.run_dir.stage(stage):
                result = {"accuracy": self._accuracy(subject.model, subject.data),
                          "parity": once(self._export, subject.model, f"{stem}.onnx", subject.input_shape)}
                if checkpoint:
                    once(self._save_checkpoint, subject, f"{stem}.pt")
            self.run_dir.record(stage, [f"{stem}.onnx"] + ([f"{stem}.pt"] if checkpoint else []), result)
        return result

    def _latency_stage(self, ctx) -> None:
        """A latency budget: the table and the loop on the dense model, before pruning."""
        from ..train import on_rank_zero as once

        cfg = self.config
        run = self.run_dir
        if cfg.budget.needs_latency_table:
            with run.stage("latency", f"measuring the latency table and calibrating {cfg.budget.describe()} "
                           f"on {self.target.name}"):
                self.latency = once(self._calibrate, ctx)
                ctx.planned = np.array(self.latency.result.widths)  # the method prunes to these widths
                # a ratio of dense fp32 became one of the dense model quantized (see _calibrate)
                ctx.request = dataclasses.replace(ctx.request, budget=self.latency.budget)

    def _prune_stage(self, subject: _Subject, ctx, method) -> None:
        """The method prunes ``subject.model`` in place (or an earlier run's result is restored)."""
        from ..train import on_rank_zero as once

        cfg, run = self.config, self.run_dir
        pruned = self._restore(subject.model, "prune", "pruned_raw.pt")
        if pruned is None:
            if cfg.prune.chosen_by:
                log.info("pruning method: %s", cfg.prune.chosen_by)
            with run.stage("prune", f"pruning with {cfg.prune.method} ({cfg.prune.importance}, "
                           f"{cfg.prune.allocation}) to {cfg.budget.describe()}"):
                self._prune(ctx, method)
                once(self._save_checkpoint, subject, "pruned_raw.pt")
            run.record("prune", ["pruned_raw.pt"], {"rounds": ctx.rounds, "oracle": ctx.oracle, "losses": ctx.losses,
                                                    "recalibration": ctx.recalibration})
        else:
            ctx.pruner.refresh()
            ctx.rounds, ctx.oracle = pruned["rounds"], pruned["oracle"]
            ctx.losses = dict(pruned.get("losses", {}))
            ctx.recalibration = pruned.get("recalibration")

    def _finetune_stage(self, subject: _Subject, ctx, method, teacher) -> bool:
        """Fine-tuning after pruning, unless the method trained while it pruned; whether it ran."""
        from ..prune.methods.phase import finetune_loss
        from ..train import on_rank_zero as once

        train = self.config.train
        finetune = not method.finetunes and train.epochs > 0 and subject.data is not None
        ctx.losses["finetune"] = finetune_loss(ctx, finetune, method.finetunes)
        if finetune and self._restore(subject.model, "finetune", "pruned.pt") is None:
            with self.run_dir.stage("finetune", f"fine-tuning {train.epochs} epochs"
                                    + (" with distillation" if teacher is not None else "")):
                self._fit(subject.model, subject.data, train.epochs, train.lr, teacher=teacher)
                once(self._save_checkpoint, subject, "pruned.pt")
            self.run_dir.record("finetune", ["pruned.pt"])
        return finetune

    def _profile_stage(self, quant: dict[str, Any] | None):
        """(dense profile, pruned profile) on the fp32 target; with a quantized model, also
        (its result, its profile, the three models timed interleaved); for a plain build, dense
        and pruned timed interleaved (a latency build's final check does that already)."""
        from ..train import on_rank_zero as once
        from .speed import interleaved_speed

        with self.run_dir.stage("profile", f"profiling dense and pruned models on {self.target.name}"):
            profiles = once(self._profile)
            quantized = (quant, *once(self._profile_quantized)) if quant else None
            speed = None
            if quant is None and self.latency is None:
                speed = once(interleaved_speed, self.run_dir.out_dir, self.fp32_target,
                             self.config.profile_iterations)
        return profiles, quantized, speed

    # -- the steps the stages take ---------------------------------------------------
    def _zoo_input(self):
        """The input a zoo model is trained on: the dataset's, unless overridden."""
        source = self.config.model
        if source.in_channels is None and source.input_size is None:
            return None
        from ..models import model_info

        info = model_info(source.zoo_name)
        size = source.input_size or info.default_input[1]
        return (source.in_channels or info.default_input[0], size, size)

    def _zoo_model(self, data):
        import torch

        from ..models import create_model

        source = self.config.model
        with torch.random.fork_rng(devices=[]):  # seeded initialisation, global RNG untouched
            torch.manual_seed(self.config.seed)
            model = create_model(source.zoo_name, num_classes=source.num_classes or data.num_classes,
                                 in_channels=data.in_channels, input_size=data.image_size)
        return model, dict(model.deploypipe_arch), data.input_shape

    def _load(self):
        from ..checkpoint import load_model

        source = self.config.model
        if source.module is not None:  # from Python: a copy is pruned, the caller's module is untouched
            return copy.deepcopy(source.module).eval(), _class_arch(source.module), source.input_shape
        kwargs = {k: v for k, v in (("num_classes", source.num_classes), ("in_channels", source.in_channels))
                  if v is not None}
        loaded = load_model(source.path, arch=source.arch, arch_kwargs=kwargs or None, trust_model=source.trust_model)
        if loaded.source_format in ("torchscript", "torch.export"):  # compiled: its layers cannot be resized
            raise InputError(f"{source.path!r} is a {loaded.source_format} program, whose layers cannot be pruned "
                             "in PyTorch", hint="give its checkpoint or state_dict (with --arch), or build from its "
                             "ONNX export (`deploypipe export`, then `deploypipe build model.onnx`)")
        norm = loaded.metadata.get("normalize") or {}
        if norm.get("mean") and norm.get("std"):
            self._stored_normalisation = (tuple(norm["mean"]), tuple(norm["std"]))
        # a whole module unpickled (--trust-model) names no architecture: its class rebuilds it
        arch = ({"name": loaded.arch, "kwargs": loaded.arch_kwargs} if loaded.arch
                else _class_arch(loaded.model) if loaded.source_format == "pickled_module" else None)
        shape = source.input_shape or loaded.input_shape  # example_inputs from Python, else what the file says
        if source.input_size and shape:
            shape = (shape[0], source.input_size, source.input_size)
        return loaded.model, arch, shape

    def _data(self, input_shape):
        from ..data import load_dataset

        cfg = self.config
        if cfg.data.splits is not None:
            if cfg.model.from_zoo:
                from ..data.splits import training_split

                training_split(cfg.data.splits, "building from the zoo trains the model first")
            return cfg.data.splits
        if cfg.data.dataset is None:
            if cfg.model.from_zoo:
                raise InputError("building from the zoo trains the model first, so it needs a dataset",
                                 hint="pass --dataset, e.g. --dataset digits")
            log.info("no --dataset: pruning by weights only, no fine-tuning, no accuracy")
            return None
        size = input_shape[1:] if input_shape else None
        channels = input_shape[0] if input_shape else None
        mean, std = cfg.data.mean, cfg.data.std
        if mean is None and self._stored_normalisation is not None:  # the checkpoint's own preprocessing
            mean, std = self._stored_normalisation
        return load_dataset(cfg.data.dataset, seed=cfg.seed, image_size=size, in_channels=channels,
                            limit=cfg.data.limit, mean=mean, std=std)

    def _fit(self, model, data, epochs: int, lr: float, teacher=None):
        from ..train import fit

        cfg = self.config
        config = cfg.train.sgd(epochs, lr, seed=cfg.seed, progress=cfg.output.progress, distill=teacher is not None)
        return fit(model, data, config, teacher=teacher)

    def _train_config(self):
        """The fine-tuning settings, for methods that train while they prune."""
        cfg = self.config
        return cfg.train.sgd(max(1, cfg.train.epochs), cfg.train.lr, seed=cfg.seed, progress=cfg.output.progress,
                             distill=cfg.train.distill, placed=False)

    def _accuracy(self, model, data) -> float | None:
        from ..train import evaluate

        if self.config.data.eval_fn is not None:
            return _called_eval_fn(self.config.data.eval_fn, model)
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
        method = create_method(cfg.prune.method, cfg.prune.method_params)
        method.check_budget(cfg.budget)  # before the latency table and any pruning
        request = PruneRequest(budget=cfg.budget, importance=cfg.prune.importance, allocation=cfg.prune.allocation,
                               round_to=self.round_to, max_ratio=cfg.prune.max_ratio,
                               calibration_batches=cfg.data.calibration_batches, seed=cfg.seed,
                               params=dict(cfg.prune.method_params))
        pruner = TorchPruner(model, (1, *input_shape))
        ctx = PruneContext(pruner, request, data=data, train_config=self._train_config(), teacher=teacher,
                           verify=cfg.verify, out_dir=self.run_dir.out_dir)
        return ctx, method

    def _calibrate(self, ctx):
        """Table and loop on the dense model: the measured plan whose widths the method prunes to.
        When the build quantizes, both time quantized models, on the target at that precision, and
        a latency ratio (of the dense fp32 model) becomes one of the dense model quantized."""
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
                                round_to=self.round_to, max_ratio=self.config.prune.max_ratio,
                                options=self.config.latency, prepare=prepare)
        except BudgetError as exc:
            raise in_fp32_terms(exc, conversion) from None
        return dataclasses.replace(plan, conversion=conversion)

    def _prune(self, ctx, method) -> None:
        cfg = self.config
        hook = None
        if ctx.data is not None and ctx.on_round is None:
            ctx.on_round = hook = RoundAccuracy(ctx.pruner.analysis.macs)
        import torch

        # a method's random draws (FBS's gate initialisation) follow --seed: this torch seeds its
        # global RNG at random in every process, and a caller's state (CPU and CUDA) is left as it was
        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(cfg.seed)
            method.run(ctx)
        if hook is not None:
            hook.finish(ctx)
        if not method.finetunes:  # a method that trains while it pruned left statistics of its own
            ctx.recalibration = recalibrate(ctx, cfg.prune.bn_batches, cfg.train.batch_size, hook)
        if cfg.verify and ctx.oracle is not None and not ctx.oracle["passed"]:
            raise VerificationError(f"the PyTorch-pruned model differs from the ONNX-shrunk original by "
                                    f"{ctx.oracle['max_abs']:.3g}", hint="please report this model")

    def _save_checkpoint(self, subject: _Subject, name: str) -> None:
        from ..checkpoint import save_checkpoint

        arch, data = subject.arch, subject.data
        meta = {"input_shape": list(subject.input_shape), "written_by": "deploypipe build",
                "dataset": data.name if data is not None else None}
        if data is not None:
            meta["normalize"] = {"mean": list(data.mean), "std": list(data.std)}
        save_checkpoint(self.run_dir.path(name), subject.model, arch=arch["name"] if arch else None,
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
        from ..profiling import profile_onnx

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
        from ..profiling import profile_onnx

        path = self.run_dir.path(quantized_name(self.precision))
        profile = profile_onnx(path, self.quant_target, iterations=self.config.profile_iterations)
        return profile, side_by_side(self.run_dir.out_dir, self.quant_target, self.precision)

    def _write_report(self, ctx, method, exported: tuple[dict, dict], profiles, quantized=None,
                      speed=None) -> BuildReport:
        """The report from the exported models, their profiles and the pruning context;
        written as ``report.json`` and ``report.html``."""
        from ..graph import analyse, load_onnx
        from ..report import write_build_report

        cfg, (dense, pruned) = self.config, exported
        analyses = [analyse(load_onnx(self.run_dir.path(f"{stem}.onnx"))) for stem in ("dense", "pruned")]
        report = assemble(
            self.run_dir, cfg, self.target, profiles,
            model_columns(*analyses, dense["accuracy"], pruned["accuracy"], *profiles),
            method=MethodSummary(cfg.prune.method, cfg.prune.importance, dict(method.values), cfg.prune.allocation,
                                 self.round_to, cfg.train.distill, dict(ctx.losses), ctx.recalibration,
                                 cfg.prune.chosen_by),
            groups=group_rows(ctx.pruner, ctx.dense_widths, ctx.dense_reasons), rounds=ctx.rounds,
            verification=_verification(ctx.oracle, dense["parity"], pruned["parity"]),
            files=("dense.onnx", "dense.pt", "pruned.onnx", "pruned.pt"), dataset=cfg.data.dataset,
            latency=self._latency_outcome(ctx, quantized, profiles[1]))
        if quantized is not None:  # (result, profile, interleaved timing)
            report = with_quantized(report, self.run_dir.out_dir, *quantized)
        report = dataclasses.replace(report, preprocessing=self._preprocessing(ctx.data), speed=speed)
        write_build_report(self.run_dir.out_dir, report)
        return report

    def _preprocessing(self, data) -> dict[str, Any] | None:
        """The normalisation the model saw, and where it came from."""
        if data is None:
            return None
        cfg = self.config
        source = ("given (--mean/--std)" if cfg.data.mean is not None else
                  "the checkpoint's" if self._stored_normalisation is not None else
                  "as the caller's data gives it" if cfg.data.splits is not None else
                  "the data source's, or computed on the training split")
        return {"mean": list(data.mean), "std": list(data.std), "from": source}

    def _latency_outcome(self, ctx, quantized, pruned_prof) -> LatencyOutcome | None:
        """With a latency budget: the model delivered (quantized, when the build quantizes)
        timed beside dense, and whether its widths are the ones the loop measured."""
        if self.latency is None:
            return None
        delivered, delivered_prof = (quantized[0]["file"], quantized[1]) if quantized else ("pruned.onnx", pruned_prof)
        final = self.latency.check(self.run_dir.path("dense.onnx"), self.run_dir.path(delivered))
        fields = self.latency.report(self.run_dir.out_dir, delivered_prof.latency_ms, final)
        fields["latency_result"]["final_widths_match_loop"] = bool(
            list(ctx.pruner.widths()) == list(self.latency.result.chosen.widths))
        return latency_outcome(fields)


def _verification(oracle: dict | None, dense_parity: dict, pruned_parity: dict) -> Verification:
    """Torch against ONNX for both exports, and the surgery oracle of the pruning."""
    return Verification(torch_vs_onnx_max_abs=max(dense_parity["max_abs"], pruned_parity["max_abs"]),
                        oracle_max_abs=oracle["max_abs"] if oracle else None,
                        passed=bool(dense_parity["passed"] and pruned_parity["passed"]
                                    and (oracle is None or oracle["passed"])))


def stage_keys(config: BuildConfig, target) -> tuple[dict[str, str], dict[str, Any]]:
    """What each stage's result depends on: the model file's content, the data, the versions,
    and the options of that stage and the stages before it (not ``config.output``: where
    results go or how they are shown)."""
    from ..quantize.config import scheme_for
    from ..utils.files import sha256_file

    path = Path(config.model.path)
    precision = build_precision(config.quantize.precision, target)
    train, data = config.train, config.data
    prune = {k: v for k, v in dataclasses.asdict(config.prune).items()
             if k not in ("chosen_by", "defaulted")}  # notes on how they were chosen, not inputs
    source = {f.name: getattr(config.model, f.name) for f in dataclasses.fields(config.model)
              if f.name not in ("path", "module")}
    sgd = {k: v for k, v in dataclasses.asdict(train).items()
           if k not in ("epochs", "lr", "pretrain_epochs", "pretrain_lr", "distill")}
    module = config.model.module
    inputs = {"model": config.model.path,
              "model_sha256": (_digest(module.state_dict().values()) if module is not None
                               else sha256_file(path) if path.is_file() else None),
              "dataset": data.dataset, "deploypipe": __version__}
    given = None if data.splits is None else _digest(t for ds in (data.splits.train, data.splits.test)
                                                      for t in ds.tensors)
    base = {**inputs, **source, **sgd, "seed": config.seed, "limit": data.limit, "mean": data.mean, "std": data.std,
            "data_sha256": given, "eval_fn": getattr(data.eval_fn, "__qualname__", None)}
    finetune = {"epochs": train.epochs, "lr": train.lr}
    keys = chain_keys(base, [
        ("train", {"pretrain_epochs": train.pretrain_epochs, "pretrain_lr": train.pretrain_lr}),
        ("export_dense", {"tolerances": target.to_dict()["tolerances"], "verify": config.verify}),
        ("prune", {**prune, "budget": config.budget.to_dict(), "calibration_batches": data.calibration_batches,
                   "distill": train.distill, "latency": dataclasses.asdict(config.latency),
                   # methods other than one-shot train while they prune, with the fine-tuning options
                   **({} if config.prune.method == "oneshot" else finetune),
                   # a latency budget is measured on the quantized models
                   **({"quantize": precision, "keep_fp32": config.quantize.keep_fp32}
                      if config.budget.needs_latency_table else {}),
                   "rounded_to": config.prune.round_to or targets_for(target, precision)[1].round_to,
                   "target": target.to_dict(verdicts=False)}),
        ("finetune", {**finetune, "distill": train.distill}),
        ("export_pruned", {}),
        ("quantize", {"precision": precision, "keep_fp32": config.quantize.keep_fp32,
                      "calibration_batches": data.calibration_batches, "verify": config.verify,
                      "scheme": scheme_for(target)}),
    ])
    return keys, inputs


def _digest(tensors) -> str:
    """sha256 over tensors' bytes: what a model or data given from Python is, for resuming."""
    import hashlib

    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _class_arch(module) -> dict[str, Any]:
    """The architecture record of a module that came without one: its own ``deploypipe_arch``,
    else its class, recorded in pruned.pt as the factory that rebuilds it (widths resized)."""
    cls = type(module)
    return dict(getattr(module, "deploypipe_arch", None) or {"name": f"{cls.__module__}:{cls.__qualname__}",
                                                             "kwargs": {}})


def _require_training(config: BuildConfig) -> None:
    """A method or criterion that trains, scores or refits on images, refused before any work
    when there are none to train on: no --dataset, or (from Python) a test set alone."""
    if config.data.has_training:
        return
    splits = config.data.splits
    from ..data.splits import training_split
    from ..prune.importance import create_importance
    from ..prune.methods import METHODS

    method, importance = config.prune.method, config.prune.importance
    if METHODS.get(method).needs_training_data:
        training_split(splits, f"method {method!r} trains or refits on images")
    if create_importance(importance).needs_data:
        training_split(splits, f"importance {importance!r} scores channels by the loss on images",
                       hint="pass --dataset, or use a weight-only criterion (l1, l2, bn_scale)")


def _called_eval_fn(eval_fn, model) -> float:
    """The caller's accuracy of ``model``: a number in [0, 1], or one sentence saying what it was."""
    import math
    import numbers

    try:
        value = eval_fn(model)
    except Exception as exc:  # the caller's code: say so, not our traceback
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise InputError(f"eval_fn raised {type(exc).__name__}: {first}",
                         hint="make eval_fn(model) return the accuracy in [0, 1]") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
            or not 0.0 <= float(value) <= 1.0:
        raise InputError(f"eval_fn returned {value!r}, not an accuracy in [0, 1]",
                         hint="return a fraction (0.85), not a percentage or another type")
    return float(value)


def _check_target_shape(target, input_shape) -> None:
    """A profile's ``input_shape`` that the model cannot take is refused before training and
    the latency table, not at the profile step minutes later."""
    if target.input_shape and input_shape and tuple(target.input_shape) != tuple(input_shape):
        raise InputError(f"target {target.name!r} sets input_shape {list(target.input_shape)}, but the "
                         f"model takes {list(input_shape)}",
                         hint="leave input_shape out of the profile (the model's own is used) or match it")


def recalibrate(ctx, batches: int, batch_size: int, hook: "RoundAccuracy | None") -> dict | None:
    """BatchNorm statistics re-estimated on ``batches`` training batches of the pruned model
    (:func:`deploypipe.train.batchnorm.recalibrate_batchnorm`): the removal changed what the
    layers after each cut see. Returns what the report says of it (None when it did not run:
    no data, no BatchNorm, or ``batches`` 0), with the round accuracy before and after."""
    from ..train.batchnorm import batchnorms, recalibrate_batchnorm

    if ctx.data is None or not ctx.data.has_training or batches <= 0 or not batchnorms(ctx.model):
        return None
    images = recalibrate_batchnorm(ctx.model, ctx.data.train, batches=batches, batch_size=batch_size,
                                   seed=ctx.request.seed)
    record: dict = {"batches": batches, "images": images}
    if hook is not None and ctx.rounds:
        after = dict(ctx.rounds[-1])
        hook.evaluate(ctx, after)
        record.update(accuracy_before=ctx.rounds[-1].get("accuracy"), accuracy_after=after["accuracy"],
                      accuracy_images=after["accuracy_images"])
    return record


class RoundAccuracy:
    """The ``on_round`` hook: test accuracy after a pruning round, before fine-tuning, on the
    first ``ROUND_EVAL_IMAGES`` test images (the report plots accuracy against MACs per round).

    Not after every round: cpli prunes one group per round, dozens on a resnet56 or a
    MobileNetV2, and evaluating each took most of its pruning time (a MobileNetV2 on 2,000
    CIFAR-10 images was still evaluating after 27 minutes of a shared CPU). A round is evaluated when the MACs fell by 1/ROUND_EVAL_POINTS of
    the dense model's since the last evaluated one; ``finish`` evaluates the last round."""

    def __init__(self, dense_macs: float):
        self.step = dense_macs / ROUND_EVAL_POINTS
        self.last = dense_macs

    def __call__(self, ctx, entry: dict) -> None:
        if self.last - entry["macs"] >= self.step:
            self.evaluate(ctx, entry)

    def finish(self, ctx) -> None:
        if ctx.rounds and "accuracy" not in ctx.rounds[-1]:
            self.evaluate(ctx, ctx.rounds[-1])

    def evaluate(self, ctx, entry: dict) -> None:
        from torch.utils.data import Subset

        from ..train import evaluate

        part = Subset(ctx.data.test, range(min(len(ctx.data.test), ROUND_EVAL_IMAGES)))
        entry["accuracy"] = float(evaluate(ctx.model, part))
        entry["accuracy_images"] = len(part)
        self.last = entry["macs"]
