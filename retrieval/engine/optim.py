"""Optimizer parameter groups with learning-rate multipliers, and epoch-wise schedules."""
from __future__ import annotations

import torch

from retrieval.config import OptimizerConfig, ScheduleConfig


def parameter_groups(named_parameters, base_lr: float, multipliers: dict[str, float]) -> list[dict]:
    """One group per multiplier; a parameter takes the multiplier of its longest matching prefix."""
    prefixes = sorted(multipliers, key=len, reverse=True)
    groups: dict[float, list] = {}
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        factor = next((multipliers[p] for p in prefixes if name.startswith(p)), 1.0)
        groups.setdefault(factor, []).append(param)
    return [{"params": params, "lr": base_lr * factor, "lr_multiplier": factor}
            for factor, params in sorted(groups.items())]


def build_optimizer(named_parameters, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(named_parameters, cfg.lr, cfg.lr_multipliers)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    optimizer = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return optimizer(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_schedule(optimizer, cfg: ScheduleConfig, epochs: int):
    if cfg.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, cfg.step_size, cfg.gamma)
    if cfg.name == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.milestones, cfg.gamma)
    if cfg.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, epochs))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
