"""What one worker of an adapter or a metric group needs: CPUs, GPUs, host memory.

Adapters and metrics declare it as a class attribute (`resources = Resources(gpus=1, memory_gb=40)`); the Ray
executor reserves it for each worker that holds the model (`--ray-worker NAME.KEY=VALUE` overrides it per model
label or metric); on a cluster of several machines a worker also computes with that many threads. The local
executor runs everything in one process and reserves nothing.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resources:
    cpus: float = 1.0
    gpus: float = 0.0
    memory_gb: float = 0.0     # host memory to reserve, GiB; 0 reserves none

    def __post_init__(self):
        for name in ("cpus", "gpus", "memory_gb"):
            if getattr(self, name) < 0:
                raise ValueError(f"resources: {name} must be >= 0, got {getattr(self, name)}")

    def describe(self) -> str:
        parts = [f"{self.cpus:g} CPU"]
        if self.gpus:
            parts.append(f"{self.gpus:g} GPU")
        if self.memory_gb:
            parts.append(f"{self.memory_gb:g} GiB")
        return ", ".join(parts)
