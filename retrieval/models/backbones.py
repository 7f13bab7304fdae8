"""Backbones: networks mapping images to a feature map, built by name from ``BACKBONES``.

Every backbone has ``forward_features(x) -> (B, C, H, W)`` and ``out_channels`` (= C).
The face nets (``senet50_face``, ``iresnet50``) live in their own modules and register here too.
"""
from __future__ import annotations

import os

import torch
import torchvision
from torch import nn

from retrieval.models.weights import load_weights, read_state_dict
from retrieval.registry import Registry, closest

#: ``BACKBONES.build(name, **args)`` -> a backbone module.
BACKBONES: Registry = Registry("backbone")

#: Stages whose first block can lose its stride-2 downsampling.
DOWNSAMPLING_STAGES = ("layer3", "layer4")


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without its pooling and classifier.

    ``pretrained``: None (random init), a torchvision weight name such as ``"IMAGENET1K_V1"``
    (fetched through torchvision's weights API into the torch hub cache on first use), or the
    path of a local state dict (a torchvision ResNet's, possibly wrapped; its ``fc.`` classifier
    is dropped).

    ``remove_downsample``: ``"layer4"`` gives the last stage stride 1, so a 224x224 image gives
    14x14 maps instead of 7x7 (CGD's figure); ``"layer3"`` removes the third stage's
    downsampling instead, which also ends at 14x14 (the variant of a popular CGD
    re-implementation); None keeps the standard strides. Weights are unchanged: only strides.
    """

    def __init__(self, arch: str, pretrained: str | None = None, remove_downsample: str | None = None):
        super().__init__()
        net = getattr(torchvision.models, arch)(weights=None)
        # torchvision's names are kept so its state dicts load as they are.
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels = net.fc.in_features
        if pretrained is not None:
            weights, source = _resnet_weights(arch, pretrained)
            load_weights(self, {k: v for k, v in weights.items() if not k.startswith("fc.")}, source)
        if remove_downsample is not None:
            if remove_downsample not in DOWNSAMPLING_STAGES:
                raise ValueError(f"remove_downsample must be one of {DOWNSAMPLING_STAGES} or None, got "
                                 f"{remove_downsample!r}." + closest(remove_downsample, DOWNSAMPLING_STAGES))
            for module in getattr(self, remove_downsample)[0].modules():
                if isinstance(module, nn.Conv2d):
                    module.stride = (1, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


def _resnet_weights(arch: str, pretrained: str) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict named by ``pretrained`` (torchvision weight name or local file) and its source."""
    enum = torchvision.models.get_model_weights(arch)
    if pretrained in enum.__members__:
        weights = enum[pretrained]
        # A cached file is not hash-checked again, so it is loaded as untrusted too.
        return weights.get_state_dict(progress=True, check_hash=True, weights_only=True), f"torchvision {weights}"
    if os.path.sep in pretrained or os.path.exists(pretrained) or pretrained.endswith((".pth", ".pt")):
        return read_state_dict(pretrained), pretrained
    names = list(enum.__members__)
    raise ValueError(f"pretrained={pretrained!r} for {arch} is neither a torchvision weight name "
                     f"({', '.join(names)}) nor a local file." + closest(pretrained, names))


def _resnet_factory(arch: str):
    def factory(pretrained: str | None = None, remove_downsample: str | None = None) -> ResNetBackbone:
        return ResNetBackbone(arch, pretrained, remove_downsample)

    factory.__name__ = factory.__qualname__ = arch
    factory.__doc__ = f"torchvision {arch} as a backbone; see :class:`ResNetBackbone` for the arguments."
    return factory


for _arch in ("resnet18", "resnet50", "resnet101", "resnet152"):
    BACKBONES.register(_arch)(_resnet_factory(_arch))


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


@BACKBONES.register("small_cnn")
class SmallCNN(nn.Module):
    """Three conv-BN-ReLU layers (widths w, 2w, 4w; the last two stride 2) for CPU demos and tests.

    Works on 8x8 to 64x64 inputs (an 8x8 digit gives a 2x2 map). It has BatchNorm, so
    freezing BN statistics behaves as it does on a ResNet.
    """

    def __init__(self, width: int = 32, in_channels: int = 3):
        super().__init__()
        if width < 1 or in_channels < 1:
            raise ValueError(f"small_cnn needs width >= 1 and in_channels >= 1, got {width}, {in_channels}")
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, width, stride=1),
            _conv_bn_relu(width, 2 * width, stride=2),
            _conv_bn_relu(2 * width, 4 * width, stride=2),
        )
        self.out_channels = 4 * width

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)
