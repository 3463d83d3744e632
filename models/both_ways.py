"""Scoring a window both ways: as recorded and played backwards, the second pass's classes renamed.

Played backwards, a window of event-count frames [T, B, 2, H, W] is its frames in reverse order with ON and OFF
swapped (a pixel that brightened going forwards darkens going backwards), and each gesture becomes the class of
the reversed motion: a clockwise arm circle turns counter-clockwise, a clap stays a clap. Averaging the two
passes, the second mapped back to the first's classes, cancels between a circle's two senses whatever a network
reads from a window's content regardless of its order (where an arm is, its shape) and keeps what the order says:
out of the training distribution, on real recordings, that content can outvote the order (a real clockwise
circle read as counter-clockwise from where it sits in the image). Every pass costs its own spikes and energy.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn


def played_backwards(frames: torch.Tensor) -> torch.Tensor:
    """Frames [T, ..., 2, H, W] (channel 0 OFF, 1 ON) of the same events with time running backwards."""
    return frames.flip(0).flip(-3)


class BothWays(nn.Module):
    """``network(x, record)`` run on ``x`` and on ``x`` played backwards as one batch [T, 2B, ...]; the rates are
    the mean of the first B rows and the last B rows with class ``reversed_class[c]`` read as class ``c``. The
    trace is the batch of 2B, marked as two passes per answer (accounting counts both)."""

    def __init__(self, network: nn.Module, reversed_class: list[int]):
        super().__init__()
        self.network = network
        self.register_buffer("reversed_class", torch.tensor(reversed_class, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor, record: bool = False):
        b = x.shape[1]
        out = self.network(torch.cat([x, played_backwards(x)], 1), record=record)
        rates, trace = out if record else (out, None)
        rates = (rates[:b] + rates[b:][:, self.reversed_class]) / 2
        return (rates, replace(trace, passes=2)) if record else rates


__all__ = ["BothWays", "played_backwards"]
