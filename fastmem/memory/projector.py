"""The key projector: a small linear map trained (InfoNCE) so that the write key and the read key of
one (word, context) meet, while other words, the same word in another context, and context-free or
unrelated questions stay apart. Trained on training words only; deterministic given its seed.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from fastmem.errors import MemoryFileError


@dataclass(frozen=True)
class ProjectorConfig:
    hidden_size: int
    layer: int
    rank: int = 256
    temperature: float = 0.05
    steps: int = 300
    learning_rate: float = 3e-3
    negative_margin: float = 0.2  # context-free / unrelated keys are pushed below this cosine
    seed: int = 0


class KeyProjector(nn.Module):
    def __init__(self, config: ProjectorConfig):
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.zeros(config.hidden_size))
        self.register_buffer("scale", torch.ones(config.hidden_size))
        self.linear = nn.Linear(config.hidden_size, config.rank, bias=False)

    def forward(self, keys: torch.Tensor) -> torch.Tensor:
        """Raw keys [..., d] -> unit vectors [..., rank]."""
        return F.normalize(self.linear((keys.float() - self.mean) / self.scale), dim=-1)

    @property
    def identity(self) -> str:
        digest = hashlib.sha256(self.linear.weight.detach().cpu().numpy().tobytes()).hexdigest()[:12]
        return f"projector-L{self.config.layer}-r{self.config.rank}-{digest}"

    def save(self, path: str | Path) -> None:
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(path), metadata={"config": json.dumps(asdict(self.config))})

    @classmethod
    def load(cls, path: str | Path) -> "KeyProjector":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                config = ProjectorConfig(**json.loads(f.metadata()["config"]))
            projector = cls(config)
            projector.load_state_dict(load_file(str(path)))
        except Exception as exc:  # noqa: BLE001 - any damage means "retrain"
            raise MemoryFileError(f"Cannot load key projector {path}: {exc}") from exc
        return projector.eval().requires_grad_(False)


def train_projector(write_keys: torch.Tensor, read_keys: torch.Tensor, negatives: torch.Tensor,
                    config: ProjectorConfig, show_progress: bool = True) -> KeyProjector:
    """write_keys[i] and read_keys[i] belong to the same binding; negatives must match nothing."""
    torch.manual_seed(config.seed)
    projector = KeyProjector(config)
    everything = torch.cat([write_keys, read_keys, negatives]).float()
    projector.mean.copy_(everything.mean(0))
    projector.scale.copy_(everything.std(0).clamp(min=1e-4))
    generator = torch.Generator().manual_seed(config.seed)
    with torch.no_grad():
        nn.init.orthogonal_(projector.linear.weight, generator=generator)
    optimizer = torch.optim.Adam(projector.linear.parameters(), lr=config.learning_rate)
    targets = torch.arange(len(write_keys))
    with torch.enable_grad():
        for _ in tqdm(range(config.steps), desc="training key projector", disable=not show_progress,
                      leave=False):
            w, r = projector(write_keys), projector(read_keys)
            sim = r @ w.T / config.temperature
            loss = F.cross_entropy(sim, targets) + F.cross_entropy(sim.T, targets)
            if len(negatives):
                neg = projector(negatives) @ w.T
                loss = loss + F.relu(neg - config.negative_margin).pow(2).sum(1).mean() * 10
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return projector.eval().requires_grad_(False)
