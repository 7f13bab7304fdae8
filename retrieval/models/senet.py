"""SENet-50 as trained on VGGFace2 (Cao et al., FG 2018), with its 256-d embedding layer.

The architecture is the Caffe SE-ResNet-50 the VGGFace2 authors released: stride in the first
1x1 convolution of a bottleneck, squeeze-and-excitation with reduction 16 (biased 1x1
convolutions), a ceil-mode 3x3 max-pool without padding, global average pooling, and, for the
"256D" models, a bias-free 1x1 convolution ``2048 -> 256`` (``feat_extract``) whose output is
the face descriptor.

Weights come from a local file: either this module's own state dict, or the published layout,
i.e. the Caffe blob names of the released model as in its PyTorch conversion
(``senet50_256_pytorch.pth``: ``conv1_7x7_s2.weight``, ``conv2_1_1x1_reduce_bn.running_mean``,
``conv2_1_1x1_down.bias``, ``feat_extract.weight``, ...), which
:func:`convert_vggface2_senet` renames.

Face crops (VGGFace2 paper, Sec. 5): faces detected by MTCNN, the detected box extended by
30% to a loose crop that includes the whole head (not aligned); the crop's shorter side
resized to 256, then a 224x224 crop (random when training, centre at test time). Input is
RGB in [0, 255] minus the mean (131.0912, 103.8827, 91.4953), no scaling: with
``ToTensor`` that is ``mean = (0.5141, 0.4074, 0.3588)`` and ``std = (1/255, 1/255, 1/255)``.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from retrieval.models.backbones import BACKBONES
from retrieval.models.weights import load_weights, read_state_dict

STAGE_BLOCKS = (3, 4, 6, 3)
STAGE_WIDTHS = (64, 128, 256, 512)
EXPANSION = 4
SE_REDUCTION = 16


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.down = nn.Conv2d(channels, channels // SE_REDUCTION, kernel_size=1)
        self.up = nn.Conv2d(channels // SE_REDUCTION, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.up(torch.relu(self.down(x.mean(dim=(-2, -1), keepdim=True))))
        return x * torch.sigmoid(scale)


class SEBottleneck(nn.Module):
    def __init__(self, in_channels: int, width: int, stride: int):
        super().__init__()
        out_channels = width * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.se = SqueezeExcitation(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + shortcut)


class SENet50Face(nn.Module):
    """SE-ResNet-50; ``forward_features`` returns the face embedding as (B, D, 1, 1).

    ``embedding_dim=256`` is the VGGFace2 "SE-ResNet-50-256D" model; ``None`` keeps the
    2048-d pooled feature (the released "senet50_ft"/"senet50_scratch" models, classifier dropped).
    """

    def __init__(self, embedding_dim: int | None = 256):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
        in_channels, stages = 64, []
        for index, (blocks, width) in enumerate(zip(STAGE_BLOCKS, STAGE_WIDTHS)):
            stride = 1 if index == 0 else 2
            layer = [SEBottleneck(in_channels, width, stride)]
            layer += [SEBottleneck(width * EXPANSION, width, 1) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layer))
            in_channels = width * EXPANSION
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.embedding = None
        if embedding_dim is not None:
            self.embedding = nn.Conv2d(in_channels, embedding_dim, kernel_size=1, bias=False)
        self.out_channels = embedding_dim or in_channels

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = x.mean(dim=(-2, -1), keepdim=True)
        return x if self.embedding is None else self.embedding(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


_CAFFE_BLOCK = re.compile(r"conv([2-5])_(\d+)_(1x1_reduce|3x3|1x1_increase|1x1_down|1x1_up|1x1_proj)(_bn)?\.(\w+)$")
_CAFFE_LAYERS = {  # Caffe layer -> (our convolution, our BatchNorm)
    "1x1_reduce": ("conv1", "bn1"),
    "3x3": ("conv2", "bn2"),
    "1x1_increase": ("conv3", "bn3"),
    "1x1_proj": ("downsample.0", "downsample.1"),
    "1x1_down": ("se.down", None),
    "1x1_up": ("se.up", None),
}
_CAFFE_STEM = {"conv1_7x7_s2": "conv1", "conv1_7x7_s2_bn": "bn1", "feat_extract": "embedding"}
_CAFFE_CLASSIFIERS = ("classifier", "classifier_low_dim")


def convert_vggface2_senet(published: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a state dict in the released VGGFace2 SENet-50 layout (Caffe blob names, ``/``
    written ``_``) to :class:`SENet50Face`'s names. Stage ``convN`` is ``layer{N-1}`` and block
    ``convN_k`` its block ``k-1``. The identity classifier is dropped; an unknown key is an error."""
    converted, unknown = {}, []
    for key, value in published.items():
        layer, _, param = key.rpartition(".")
        if layer in _CAFFE_STEM:
            converted[f"{_CAFFE_STEM[layer]}.{param}"] = value
        elif layer in _CAFFE_CLASSIFIERS:
            continue
        elif match := _CAFFE_BLOCK.match(key):
            stage, block, part, bn, param = match.groups()
            conv_name, bn_name = _CAFFE_LAYERS[part]
            if bn and bn_name is None:
                unknown.append(key)
                continue
            converted[f"layer{int(stage) - 1}.{int(block) - 1}.{bn_name if bn else conv_name}.{param}"] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"not a VGGFace2 SENet-50 state dict: unknown keys {', '.join(unknown[:5])}")
    return converted


def _is_caffe_layout(state_dict: dict[str, torch.Tensor]) -> bool:
    return any(key.startswith("conv1_7x7_s2") for key in state_dict)


@BACKBONES.register("senet50_face")
def senet50_face(pretrained: str | None = None, embedding_dim: int | None = 256) -> SENet50Face:
    """SENet-50 for VGGFace2; ``pretrained`` is a local file in this module's or the published layout."""
    net = SENet50Face(embedding_dim)
    if pretrained is not None:
        weights = read_state_dict(pretrained)
        load_weights(net, convert_vggface2_senet(weights) if _is_caffe_layout(weights) else weights, pretrained)
    return net
