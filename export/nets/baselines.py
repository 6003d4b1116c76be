"""The FCN and CNN baselines: y/s (batch, n_ω) → glue x (batch, n_Ω), float32, inputs standardized per ω point."""
from __future__ import annotations

import torch
from torch import nn


class _Standardized(nn.Module):
    """Base of the FCN/CNN baselines: inputs standardized per ω point with the training spectra's
    mean and std (:meth:`standardize`, stored as buffers, exported with the weights); the output is
    clamped at 0 in evaluation only (an output ReLU in training kills outputs for good)."""

    def __init__(self, n_omega: int):
        super().__init__()
        self.register_buffer("y_mean", torch.zeros(n_omega))
        self.register_buffer("y_std", torch.ones(n_omega))

    def standardize(self, y: torch.Tensor) -> None:
        """Set the input statistics from training spectra y (N, n_ω)."""
        self.y_mean.copy_(y.mean(0))
        self.y_std.copy_(y.std(0).clamp_min(1e-6 * float(y.std(0).max())))

    def forward(self, y):
        x = self.body((y - self.y_mean) / self.y_std)
        return x if self.training else x.clamp_min(0)


class FCN(_Standardized):
    """Fully connected baseline y (B, n_ω) → x (B, n_Ω)."""

    def __init__(self, n_omega: int, n_Omega: int, width: int = 512, depth: int = 3):
        super().__init__(n_omega)
        layers, n = [], n_omega
        for _ in range(depth):
            layers += [nn.Linear(n, width), nn.ReLU()]
            n = width
        layers.append(nn.Linear(n, n_Omega))
        self.body = nn.Sequential(*layers)


class CNN(_Standardized):
    """Convolutional baseline y (B, n_ω) → x (B, n_Ω): 1-D convolutions then a linear read-out."""

    def __init__(self, n_omega: int, n_Omega: int, channels: int = 32, depth: int = 3):
        super().__init__(n_omega)
        layers, c = [nn.Unflatten(1, (1, n_omega))], 1
        for _ in range(depth):
            layers += [nn.Conv1d(c, channels, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2)]
            c = channels
        layers += [nn.Flatten(), nn.Linear(channels * (n_omega // 2 ** depth), n_Omega)]
        self.body = nn.Sequential(*layers)
