"""Model analysis on the bottom layer (torch/numpy/stdlib only): convolution arithmetic, receptive
fields, per-layer summaries and MAC counting. See docs/analysis.md."""

from cvzoo.analysis.conv_arith import (
    ConvArithmeticError,
    ConvCost,
    HDCResult,
    ReceptiveField,
    compare_conv_costs,
    conv_output_size,
    conv_params_flops,
    conv_transpose_output_size,
    hdc_check,
    pool_output_size,
    receptive_field,
)
from cvzoo.analysis.flops import AnalysisInputError, FlopReport, count_flops
from cvzoo.analysis.model_rf import (
    ModelReceptiveField,
    empirical_receptive_field,
    model_receptive_field,
)
from cvzoo.analysis.summary import LayerRow, ModelSummary, format_summary, model_summary

__all__ = [
    "AnalysisInputError",
    "ConvArithmeticError",
    "ConvCost",
    "FlopReport",
    "HDCResult",
    "LayerRow",
    "ModelReceptiveField",
    "ModelSummary",
    "ReceptiveField",
    "compare_conv_costs",
    "conv_output_size",
    "conv_params_flops",
    "conv_transpose_output_size",
    "count_flops",
    "empirical_receptive_field",
    "format_summary",
    "hdc_check",
    "model_receptive_field",
    "model_summary",
    "pool_output_size",
    "receptive_field",
]
