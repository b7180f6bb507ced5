"""Feature Boosting and Suppression (Gao et al., ICLR 2019): per-input channel gating,
its dynamic MAC count, its ONNX export, and static removal of channels that rarely fire.

    gated = gate_model(model, (1, 3, 32, 32))        # conv + BN pairs -> FBSConv, on a copy
    train_gated(gated, data, config, GateSchedule(0.5))
    count_dynamic_macs(gated, batches, dense_macs)   # per input
    export_gated(gated, "gated.onnx")                # ParityReport against ONNX Runtime
    stats = firing_stats(gated, calibration)
    fold_into(model, gated, stats); static_drop(group_rates(pruner, gated, stats)[0], ...)

The method ``--method fbs`` (:mod:`deploypipe.prune.methods.fbs`) runs these in order.
"""
from .export import export_gated
from .gate import FBSConv
from .macs import DynamicMacs, count_dynamic_macs, sample_macs
from .static import FiringStats, firing_stats, fold_into, group_rates, static_drop
from .train import GateSchedule, train_gated
from .wrap import ConvSite, GatedModel, gate_model
from .wta import keep_count, wta_mask

__all__ = ["ConvSite", "DynamicMacs", "FBSConv", "FiringStats", "GateSchedule", "GatedModel", "count_dynamic_macs",
           "export_gated", "firing_stats", "fold_into", "gate_model", "group_rates", "keep_count", "sample_macs",
           "static_drop", "train_gated", "wta_mask"]
