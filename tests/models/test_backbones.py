import pytest
import torch
import torchvision
from torch import nn
from torchvision.models._api import WeightsEnum

from retrieval.models import BACKBONES


def feature_shape(name: str, size: int, **args) -> tuple[int, ...]:
    """Output shape of a forward pass on the meta device: shapes without computation."""
    with torch.device("meta"):
        backbone = BACKBONES.build(name, **args)
        return tuple(backbone.forward_features(torch.empty(1, 3, size, size)).shape)


@pytest.mark.parametrize("name, channels", [("resnet18", 512), ("resnet50", 2048), ("resnet101", 2048)])
def test_resnets_give_7x7_at_224_and_14x14_without_a_downsampling(name, channels):
    assert feature_shape(name, 224) == (1, channels, 7, 7)
    assert feature_shape(name, 224, remove_downsample="layer4") == (1, channels, 14, 14)
    assert feature_shape(name, 224, remove_downsample="layer3") == (1, channels, 14, 14)


def test_stride_removal_keeps_weights_and_computes_a_real_forward():
    torch.manual_seed(0)
    standard = BACKBONES.build("resnet18").eval()
    torch.manual_seed(0)
    wide = BACKBONES.build("resnet18", remove_downsample="layer4").eval()
    assert all(torch.equal(a, b) for a, b in zip(standard.state_dict().values(), wide.state_dict().values()))
    assert wide.out_channels == 512
    with torch.no_grad():
        out = wide.forward_features(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 512, 14, 14) and torch.isfinite(out).all()


def test_bad_stage_name_is_a_clear_error():
    with pytest.raises(ValueError, match="Did you mean 'layer4'"):
        BACKBONES.build("resnet18", remove_downsample="layer_4")


def test_local_weight_file_loads_wrapped_and_prefixed(tmp_path):
    source = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in source.state_dict().items()}, "epoch": 3}, path)
    backbone = BACKBONES.build("resnet18", pretrained=str(path))
    assert torch.equal(backbone.layer3[1].conv2.weight, source.layer3[1].conv2.weight)
    assert torch.equal(backbone.bn1.running_var, source.bn1.running_var)
    assert not hasattr(backbone, "fc")


def test_weights_for_another_architecture_are_refused_by_name(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match=r"r50\.pth.*(missing|unexpected|wrong shape)"):
        BACKBONES.build("resnet18", pretrained=str(path))


def test_missing_file_and_unknown_weight_name_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        BACKBONES.build("resnet18", pretrained=str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        BACKBONES.build("resnet50", pretrained="IMAGENET_V1")


def test_torchvision_weight_name_goes_through_the_weights_api(monkeypatch):
    """The download itself is replaced: tests never touch the network."""
    source = torchvision.models.resnet18(weights=None)
    requested = []

    def fake_get_state_dict(self, *args, **kwargs):
        requested.append(self)
        return source.state_dict()

    monkeypatch.setattr(WeightsEnum, "get_state_dict", fake_get_state_dict)
    backbone = BACKBONES.build("resnet18", pretrained="IMAGENET1K_V1")
    assert requested == [torchvision.models.ResNet18_Weights.IMAGENET1K_V1]
    assert torch.equal(backbone.conv1.weight, source.conv1.weight)


@pytest.mark.parametrize("size, expected", [(8, 2), (64, 16)])
def test_small_cnn_shapes(size, expected):
    net = BACKBONES.build("small_cnn", width=4)
    assert net.out_channels == 16
    assert net.forward_features(torch.randn(2, 3, size, size)).shape == (2, 16, expected, expected)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 3
