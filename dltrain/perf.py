"""How hard a run worked the hardware: training FLOPs per sample, FLOP/s achieved and, on a GPU
whose peak is known, the model FLOPs utilisation (MFU, as in the PaLM paper: the FLOPs the
model needs, not counting recomputation, over the device's peak).

The FLOPs come from torch's own counter (torch.utils.flop_counter: matmuls, convolutions and
attention, by shape) on one forward pass of one batch, in eval mode and without autograd so
that no random number is drawn and no gradient touched; a training step costs three times
that (the backward pass computes two products for every one of the forward's).
"""

from __future__ import annotations

from typing import Any

import torch

# Dense peak TFLOP/s by device name (a substring of torch.cuda.get_device_name) and
# precision, from the vendors' data sheets: bf16/16 on tensor cores; 32 without TF32, which
# dltrain leaves off (torch's default matmul precision).
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.4, "16": 989.4, "32": 66.9},
    "H100 PCIe": {"bf16": 756.0, "16": 756.0, "32": 51.2},
    "H100": {"bf16": 989.4, "16": 989.4, "32": 66.9},  # SXM
    "A100": {"bf16": 312.0, "16": 312.0, "32": 19.5},
    "L4": {"bf16": 121.0, "16": 121.0, "32": 30.3},
}


def peak_tflops(device: torch.device, precision: str) -> float | None:
    """The device's dense peak TFLOP/s at `precision` (trainer.precision), if known."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_TFLOPS.items():  # the more specific names come first
        if key in name:
            return peaks.get(str(precision))
    return None


def _cpu_attention(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None,
                   **kwargs: Any) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query, key, value)  # (the counter hands over shapes)


def training_flops_per_sample(model: torch.nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one training step per sample of the batch `x`: 3x the forward pass's."""
    from torch.utils.flop_counter import FlopCounterMode

    # torch's counter knows the GPU kernels of scaled_dot_product_attention, not the CPU's
    cpu = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=cpu) as counter:
            model(x)
    finally:
        model.train(was_training)
    return 3.0 * counter.get_total_flops() / x.shape[0]


def utilisation(flops_per_sample: float, samples_per_s: float | None,
                peak: float | None) -> dict[str, Any]:
    """The summary's account: FLOPs per sample, TFLOP/s achieved and MFU where known."""
    result: dict[str, Any] = {"flops_per_sample": round(flops_per_sample)}
    if samples_per_s:
        achieved = flops_per_sample * samples_per_s / 1e12
        result["tflops"] = round(achieved, 4)
        if peak:
            result["mfu"] = round(achieved / peak, 4)
    return result
