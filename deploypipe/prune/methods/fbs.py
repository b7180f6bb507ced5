"""FBS: Feature Boosting and Suppression (Gao et al., "Dynamic Channel Pruning", ICLR
2019) as a build method, with the static removal that makes it pay off on an engine.

``run`` does, in order (the pieces live in :mod:`deploypipe.prune.fbs`):

1. gate a copy of the model (every conv + BN pair gets a saliency branch) and train it:
   gate warm-up with the base frozen, then joint training, density 1 -> ``density``,
   CE + ``l1`` * ||m * g||_1;
2. measure it: test accuracy, **dynamic MACs** per test input (skipped input and output
   channels), and export it to ONNX (``fbs_gated.onnx`` in the run directory) with the
   ONNX Runtime parity check (enforced under ``--verify``);
3. **static removal**: fold the gates back into the plain model (gamma := E[m g],
   beta := E[m] beta), and remove through ``ctx.prune`` the group channels that fire on
   fewer than ``threshold`` of the calibration inputs (group rate = largest rate of the
   group's gated producers). ``build`` then fine-tunes the static model.

By default (``static=threshold``) the budget flags do not apply: how much is removed
statically follows from the firing rates and ``threshold``; the round record says so and
carries both figures. ``static=budget`` instead removes, within the widths the build's
allocation gives the budget, the channels that fire least (groups without gated producers
by L1), so FBS can be compared with other methods at equal MACs.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from ...train import evaluate, make_loader
from ..allocate import select_drop
from ..fbs import (GateSchedule, count_dynamic_macs, export_gated, firing_stats, fold_into, gate_model,
                   group_rates, static_drop, train_gated)
from ._live import floors
from .base import METHODS, Param, PruneContext, PruneMethod
from .phase import TASK_LOSS, PhaseProgress, plan_phase, steps_per_epoch

STATIC = ("threshold", "budget")

GATED_ONNX = "fbs_gated.onnx"


@METHODS.register("fbs")
class FBS(PruneMethod):
    name = "fbs"
    needs_training_data = True
    description = ("dynamic channel gating (feature boosting and suppression): train per-input gates, "
                   "count dynamic MACs, export the gated ONNX, then remove channels that rarely fire")
    params = {"density": Param(0.5, "share of each gated conv's output channels kept per input (d)"),
              "warmup_epochs": Param(1, "epochs training only the gates, the base frozen"),
              "joint_epochs": Param(2, "epochs training gates and base together"),
              "ramp": Param(0.5, "share of all gate-training steps over which d falls from 1 to density"),
              "l1": Param(1e-8, "lambda of the L1 loss on the kept saliencies m * g"),
              "gate_init": Param(0.1, "gates' initial FC weight noise relative to mean |gamma| (0: start "
                                      "input-independent, exactly the dense model)"),
              "threshold": Param(0.01, "static removal: a channel firing on fewer than this share "
                                       "of the calibration inputs is removed"),
              "static": Param("threshold", "static removal by firing threshold, or to the build's budget "
                                           "(budget: the least-firing channels within its allocation)")}
    finetunes = False  # build fine-tunes the statically pruned model

    def run(self, ctx: PruneContext) -> None:
        from ._live import require_data

        require_data(ctx, "fbs", "trains gates")
        density = float(self.param("density"))
        if not 0.0 < density <= 1.0:
            raise InputError(f"fbs density must lie in (0, 1], got {density}", hint="e.g. --method-arg density=0.5")
        if self.param("static") not in STATIC:
            raise InputError(f"unknown static removal {self.param('static')!r} for fbs",
                             hint="use static=threshold or static=budget")
        gated = gate_model(ctx.model, ctx.pruner.input_shape, init_scale=float(self.param("gate_init")))
        schedule = GateSchedule(density, int(self.param("warmup_epochs")), int(self.param("joint_epochs")),
                                float(self.param("ramp")), float(self.param("l1")))
        phases = train_gated(gated, ctx.data, ctx.train_config, schedule, callbacks=[self._progress(ctx, gated)])
        record = self._dynamic(ctx, gated)
        record["gate_training"] = [{"epochs": len(r.history), "final_val_acc": r.final_val_acc,
                                    "seconds": round(r.seconds, 1)} for r in phases]
        self._static(ctx, gated, record)

    def _progress(self, ctx: PruneContext, gated) -> PhaseProgress:
        """Say what gate training will take and record its losses; report after each epoch."""
        epochs = int(self.param("warmup_epochs")) + int(self.param("joint_epochs"))
        phase = plan_phase(ctx, self.name, "epochs", epochs * steps_per_epoch(ctx.data, ctx.train_config),
                           f"{len(gated.gates)} gated convolutions, {self.param('warmup_epochs')} warm-up epoch(s) "
                           f"with the base frozen, {self.param('joint_epochs')} joint, density 1 -> "
                           f"{float(self.param('density')):g}")
        phase.announce()
        ctx.losses["prune_training"] = f"{TASK_LOSS} + {float(self.param('l1')):g} x L1 of the kept saliencies"
        ctx.losses["scoring"] = "firing rates of the gates on calibration inputs (no loss)"
        return PhaseProgress(phase, lambda: f"density {gated.density:.2f}")

    # -- the dynamic model ----------------------------------------------------------
    def _dynamic(self, ctx: PruneContext, gated) -> dict[str, Any]:
        test = ctx.data.test
        dynamic = count_dynamic_macs(gated, make_loader(test, 256, shuffle=False), ctx.dense_macs)
        parity, onnx_name = self._export(ctx, gated)
        return {"method": "fbs", "density": gated.density, "gated_convs": len(gated.gates),
                "gated_accuracy": evaluate(gated.model, test), "dense_macs": ctx.dense_macs,
                "dynamic_macs": dynamic.mean, "dynamic": dynamic.to_dict(),
                "gated_onnx": onnx_name, "gated_parity": parity.to_dict()}

    def _export(self, ctx: PruneContext, gated):
        """Export into the run directory (a temporary one without it); check parity."""
        out_dir = ctx.out_dir
        with tempfile.TemporaryDirectory(prefix="deploypipe-fbs-") as tmp:
            path = Path(out_dir or tmp) / GATED_ONNX
            parity = export_gated(gated, path)
        if ctx.verify:
            parity.check()
        return parity, (GATED_ONNX if out_dir else None)

    # -- static removal -------------------------------------------------------------
    def _static(self, ctx: PruneContext, gated, record: dict[str, Any]) -> None:
        calibration = ctx.calibration()
        stats = firing_stats(gated, calibration)
        fold_into(ctx.model, gated, stats)
        rates, why = group_rates(ctx.pruner, gated, stats)
        threshold = float(self.param("threshold"))
        if self.param("static") == "budget":
            drop = budget_drop(ctx, rates)
        else:
            drop = static_drop(rates, ctx.pruner.widths(), floors(ctx), threshold=threshold,
                               round_to=max(1, ctx.request.round_to))
        widths = ctx.pruner.widths().copy()
        for gid, idx in drop.items():
            widths[gid] -= len(idx)
        record.update({"static_macs": ctx.dense_cost.macs(widths), "threshold": threshold,
                       "calibration_inputs": stats.inputs, "firing": stats.summary(threshold),
                       "groups_removable": sorted(rates),
                       "groups_kept_whole": {str(g): r for g, r in sorted(why.items())},
                       "budget": ctx.request.budget.describe() + ": the least-firing channels" if
                       self.param("static") == "budget" else "not used: fbs removes channels by firing rate "
                       "(threshold)"})
        ctx.prune(drop, **record)
        ctx.rounds[-1]["static_accuracy_before_finetune"] = evaluate(ctx.model, ctx.data.test)


def budget_drop(ctx: PruneContext, rates: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Channels to remove to meet the build's budget: the widths its allocation gives, the
    least-firing channels of each group (by L1 where no gated conv produces the group)."""
    from .increg import channel_l1

    scores = {**channel_l1(ctx.pruner), **rates}
    keep = ctx.keep_for(ctx.request.budget, scores)
    return select_drop([scores.get(g.id, np.zeros(g.width)) for g in ctx.pruner.groups], keep)
