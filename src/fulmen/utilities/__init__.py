"""Public utilities, under Lightning's import paths."""

from fulmen.utilities.apply_func import apply_to_collection, move_data_to_device
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.lazy_exports import lazy_exports
from fulmen.utilities.rank_zero import (
    rank_zero_debug,
    rank_zero_deprecation,
    rank_zero_info,
    rank_zero_only,
    rank_zero_warn,
)
from fulmen.utilities.seed import seed_everything

__all__ = [
    "AttributeDict",
    "CombinedLoader",
    "GradClipAlgorithmType",
    "LightningEnum",
    "MisconfigurationException",
    "apply_to_collection",
    "disable_possible_user_warnings",
    "find_shared_parameters",
    "grad_norm",
    "is_picklable",
    "is_shared_filesystem",
    "measure_flops",
    "move_data_to_device",
    "rank_zero_debug",
    "rank_zero_deprecation",
    "rank_zero_info",
    "rank_zero_only",
    "rank_zero_warn",
    "seed_everything",
    "set_shared_parameters",
    "suggested_max_num_workers",
]

# Loaded on first use, so importing fulmen.utilities stays cheap.
__getattr__, __dir__ = lazy_exports(__name__, {"AttributeDict": "fulmen.utilities.parsing",
                                               "grad_norm": "fulmen.utilities.grads",
                                               "is_picklable": "fulmen.utilities.parsing",
                                               "disable_possible_user_warnings": "fulmen.utilities.warnings",
                                               "find_shared_parameters": "fulmen.utilities.parameter_tying",
                                               "set_shared_parameters": "fulmen.utilities.parameter_tying",
                                               "GradClipAlgorithmType": "fulmen.utilities.enums",
                                               "LightningEnum": "fulmen.utilities.enums",
                                               "measure_flops": "fulmen.utilities.throughput",
                                               "CombinedLoader": "fulmen.utilities.combined_loader",
                                               "is_shared_filesystem": "fulmen.utilities.data",
                                               "suggested_max_num_workers": "fulmen.utilities.data"})
