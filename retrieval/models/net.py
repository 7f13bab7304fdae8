"""The retrieval model: a backbone, a head, and an optional post-hoc whitening; and its factory."""
from __future__ import annotations

import inspect

import torch
from torch import nn

from retrieval.models.backbones import BACKBONES
from retrieval.models.heads import HEADS
from retrieval.models.whitening import Whitening
from retrieval.registry import closest

WHITENING_PREFIX = "whitening."


class RetrievalNet(nn.Module):
    """``forward(images)`` is the head's dict (for training losses); ``embed(images)`` is the
    descriptor used for retrieval: the embedding, whitened and re-normalised when
    ``self.whitening`` is set.

    The whitening is learned after training (``model.whitening = fit_whitening(...)``) and is
    saved with the model's state dict; loading a state dict that holds one installs it.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.whitening: Whitening | None = None

    def forward(self, images: torch.Tensor) -> dict:
        return self.head(self.backbone.forward_features(images))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        embedding = self(images)["embedding"]
        return embedding if self.whitening is None else self.whitening(embedding)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        has_whitening = any(key.startswith(WHITENING_PREFIX) for key in state_dict)
        if has_whitening:
            projection = state_dict[WHITENING_PREFIX + "projection"]
            self.whitening = Whitening.empty(projection.shape[1], projection.shape[0]).to(projection.device)
        elif strict:
            self.whitening = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def _check_args(kind: str, name: str, factory, args: dict, given_positionally: int = 0) -> None:
    """Raise a clear error naming an argument ``factory`` does not take, and what it does take."""
    parameters = list(inspect.signature(factory).parameters.values())[given_positionally:]
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    accepted = [p.name for p in parameters]
    for arg in args:
        if arg not in accepted:
            raise ValueError(f"{kind} {name!r} has no argument {arg!r}; it accepts: "
                             f"{', '.join(accepted) or 'none'}." + closest(arg, accepted))


def build_model(backbone_name: str, backbone_args: dict, head_name: str, head_args: dict,
                num_classes: int) -> RetrievalNet:
    """The model named by a config: ``BACKBONES[backbone_name](**backbone_args)`` feeding
    ``HEADS[head_name](backbone.out_channels, num_classes, **head_args)``."""
    backbone_factory, head_factory = BACKBONES.get(backbone_name), HEADS.get(head_name)
    _check_args("backbone", backbone_name, backbone_factory, backbone_args)
    _check_args("head", head_name, head_factory, head_args, given_positionally=2)
    backbone = backbone_factory(**backbone_args)
    return RetrievalNet(backbone, head_factory(backbone.out_channels, num_classes, **head_args))
