"""The centre of deploypipe: channel groups on any ONNX graph and exact surgery.

    model = load_onnx("model.onnx")
    analysis = analyse(model)                 # channel groups, frozen ones with reasons
    drop = plan_drop(analysis, ratio=0.3)     # {group id: channel indices}, from deploypipe.prune.plan
    small = shrink(analysis, drop)            # physically smaller, checker-clean
    verify_shrink(analysis, small, drop)      # the oracle
"""
from .analysis import Analysis, ChannelGroup, Member, analyse, check_drop
from .load import load_onnx, save_onnx
from .normalize import normalize
from .oracle import OracleReport, verify_shrink
from .surgery import shrink

__all__ = ["Analysis", "ChannelGroup", "Member", "OracleReport", "analyse", "check_drop",
           "load_onnx", "normalize", "save_onnx", "shrink", "verify_shrink"]
