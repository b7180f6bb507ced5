"""Target profiles: validated, frozen descriptions of where a model will run."""
from __future__ import annotations

from .loader import DEFAULT_TARGET, list_targets, load_target, profiles_dir
from .target_profile import GPU_PROVIDERS, TargetProfile, Tolerances

__all__ = ["DEFAULT_TARGET", "GPU_PROVIDERS", "TargetProfile", "Tolerances", "list_targets",
           "load_target", "profiles_dir"]
