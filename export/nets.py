"""PyTorch models: the rRIM (physics passed in, never built here) and the FCN/CNN baselines.

Shapes: y is scaled scattering rates y/s (batch, n_ω); A is A/s (n_ω, n_Ω); P is
(AₛᵀAₛ + hI)⁻¹Aₛᵀ (n_Ω, n_ω); x is the glue function (batch, n_Ω). All float32 in training.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class RRIMSettings:
    """Update-network and recurrence settings (DESIGN §2; ``hidden`` is a documented default)."""

    hidden: int = 32
    n_steps: int = 15
    x0: str = "tikhonov"  # "zeros" or "tikhonov" (x_0 = P y, the plain Tikhonov solution)
    nonnegative: bool = True

    def __post_init__(self):
        if self.x0 not in ("zeros", "tikhonov"):
            raise ValueError(f"x0: expected 'zeros' or 'tikhonov', got {self.x0!r}")
        if self.n_steps < 1 or self.hidden < 1:
            raise ValueError("n_steps and hidden must be ≥ 1")

    def to_dict(self) -> dict:
        return asdict(self)


def preconditioned_gradient(y: torch.Tensor, x: torch.Tensor, A: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """∇ = P(y − A x) for rows y (B, n_ω), x (B, n_Ω), scaled units; shape (B, n_Ω)."""
    return (y - x @ A.T) @ P.T


class ConvGRUCell(nn.Module):
    """A GRU applied pointwise over the Ω grid with 1×1 convolutions: inputs (B, C_in, n), state (B, C, n).

    Written with convolutions rather than ``nn.GRUCell`` (about 3× faster to train on CPU; exports to ONNX).
    """

    def __init__(self, in_channels: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv1d(in_channels + hidden, 2 * hidden, 1)
        self.candidate = nn.Conv1d(in_channels + hidden, hidden, 1)

    def forward(self, inp: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        z, r = torch.sigmoid(self.gates(torch.cat([inp, state], 1))).chunk(2, 1)
        c = torch.tanh(self.candidate(torch.cat([inp, r * state], 1)))
        return state + z * (c - state)


class UpdateNetwork(nn.Module):
    """g_φ: [x_t, ∇_t] (B, 2, n_Ω) and state (h1, h2) → Δx (B, n_Ω) and the new state.

    Conv1d(k=5) → ConvGRU → Conv1d(k=3, dilation 2) → ConvGRU → Conv1d(k=3) (DESIGN §2).
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.inp = nn.Conv1d(2, hidden, 5, padding=2)
        self.gru1 = ConvGRUCell(hidden, hidden)
        self.mid = nn.Conv1d(hidden, hidden, 3, padding=2, dilation=2)
        self.gru2 = ConvGRUCell(hidden, hidden)
        self.out = nn.Conv1d(hidden, 1, 3, padding=1)

    def forward(self, x, grad, h1, h2):
        f = torch.relu(self.inp(torch.stack([x, grad], 1)))
        h1 = self.gru1(f, h1)
        h2 = self.gru2(torch.relu(self.mid(h1)), h2)
        return self.out(h2).squeeze(1), h1, h2


class RRIM(nn.Module):
    """x_{t+1} = x_t + g_φ(∇_t, x_t, s_t), ∇_t = P(y − A x_t); weights shared over steps.

    ``forward(y, A, P)`` returns the list of iterates [x_1, …, x_{N_t}], each (B, n_Ω).
    With ``update=None`` replaced by :class:`IdentityUpdate` it is iterated Tikhonov.
    """

    def __init__(self, settings: RRIMSettings = RRIMSettings()):
        super().__init__()
        self.settings = settings
        self.update = UpdateNetwork(settings.hidden)

    def forward(self, y: torch.Tensor, A: torch.Tensor, P: torch.Tensor) -> list[torch.Tensor]:
        s = self.settings
        batch, n_Omega = y.shape[0], A.shape[1]
        x = y @ P.T if s.x0 == "tikhonov" else y.new_zeros(batch, n_Omega)
        h1 = y.new_zeros(batch, self.update.hidden, n_Omega)
        h2 = torch.zeros_like(h1)
        iterates = []
        for _ in range(s.n_steps):
            grad = preconditioned_gradient(y, x, A, P)
            dx, h1, h2 = self.update(x, grad, h1, h2)
            x = x + dx
            if s.nonnegative:
                x = torch.relu(x)
            iterates.append(x)
        return iterates


class IdentityUpdate(nn.Module):
    """g(∇, x, s) = ∇: turns an :class:`RRIM` into iterated Tikhonov (for tests)."""

    hidden = 1

    def forward(self, x, grad, h1, h2):
        return grad, h1, h2


class FCN(nn.Module):
    """Fully connected baseline y (B, n_ω) → x (B, n_Ω); ReLU output keeps x ≥ 0."""

    def __init__(self, n_omega: int, n_Omega: int, width: int = 512, depth: int = 3):
        super().__init__()
        layers, n = [], n_omega
        for _ in range(depth):
            layers += [nn.Linear(n, width), nn.ReLU()]
            n = width
        layers += [nn.Linear(n, n_Omega), nn.ReLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, y):
        return self.net(y)


class CNN(nn.Module):
    """Convolutional baseline y (B, n_ω) → x (B, n_Ω): 1-D convolutions then a linear read-out."""

    def __init__(self, n_omega: int, n_Omega: int, channels: int = 32, depth: int = 3):
        super().__init__()
        layers, c = [], 1
        for _ in range(depth):
            layers += [nn.Conv1d(c, channels, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2)]
            c = channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * (n_omega // 2 ** depth), n_Omega), nn.ReLU())

    def forward(self, y):
        return self.head(self.features(y.unsqueeze(1)))
