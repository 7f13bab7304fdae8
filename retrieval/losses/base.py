"""What every loss module shares: it computes in float32 (or float64) even under mixed precision."""
from __future__ import annotations

import functools

import torch

from retrieval.losses.functional import at_least_float32


def float32_forward(forward):
    """Wrap ``forward(self, inputs, labels)`` so that autocast is off inside and half-precision inputs are
    promoted: AP relaxations with small temperatures or bin widths lose their meaning in 16-bit floats."""

    @functools.wraps(forward)
    def wrapped(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=inputs.device.type, enabled=False):
            return forward(self, at_least_float32(inputs), labels)

    return wrapped
