"""Face nets load state dicts written in their published layouts (built here with random weights)."""
import pytest
import torch

from retrieval.models import BACKBONES, build_model
from retrieval.models.iresnet import convert_insightface_mxnet
from retrieval.models.senet import convert_vggface2_senet

GEN = torch.Generator().manual_seed(0)


def random_tensor(name: str, shape) -> torch.Tensor:
    if name.endswith(("running_var", "moving_var")):
        return torch.rand(shape, generator=GEN) + 0.5
    return torch.randn(shape, generator=GEN) * 0.02


def bn(prefix: str, channels: int, names=("weight", "bias", "running_mean", "running_var")) -> dict:
    return {f"{prefix}{n}": random_tensor(n, (channels,)) for n in names}


def caffe_senet50_256() -> dict:
    """Keys and shapes of the released VGGFace2 SE-ResNet-50-256D, Caffe blob names with '_' for '/'."""
    sd = {"conv1_7x7_s2.weight": random_tensor("w", (64, 3, 7, 7)), **bn("conv1_7x7_s2_bn.", 64)}
    in_ch = 64
    for stage, blocks, width in zip((2, 3, 4, 5), (3, 4, 6, 3), (64, 128, 256, 512)):
        out = 4 * width
        for block in range(1, blocks + 1):
            p = f"conv{stage}_{block}_"
            sd[p + "1x1_reduce.weight"] = random_tensor("w", (width, in_ch, 1, 1))
            sd.update(bn(p + "1x1_reduce_bn.", width))
            sd[p + "3x3.weight"] = random_tensor("w", (width, width, 3, 3))
            sd.update(bn(p + "3x3_bn.", width))
            sd[p + "1x1_increase.weight"] = random_tensor("w", (out, width, 1, 1))
            sd.update(bn(p + "1x1_increase_bn.", out))
            sd[p + "1x1_down.weight"] = random_tensor("w", (out // 16, out, 1, 1))
            sd[p + "1x1_down.bias"] = random_tensor("b", (out // 16,))
            sd[p + "1x1_up.weight"] = random_tensor("w", (out, out // 16, 1, 1))
            sd[p + "1x1_up.bias"] = random_tensor("b", (out,))
            if block == 1:
                sd[p + "1x1_proj.weight"] = random_tensor("w", (out, in_ch, 1, 1))
                sd.update(bn(p + "1x1_proj_bn.", out))
            in_ch = out
    sd["feat_extract.weight"] = random_tensor("w", (256, 2048, 1, 1))
    sd["classifier_low_dim.weight"] = random_tensor("w", (8631, 256))
    sd["classifier_low_dim.bias"] = random_tensor("b", (8631,))
    return sd


def test_senet50_face_loads_the_published_vggface2_layout(tmp_path):
    published = caffe_senet50_256()
    path = tmp_path / "senet50_256_pytorch.pth"
    torch.save(published, path)
    net = BACKBONES.build("senet50_face", pretrained=str(path)).eval()
    expected = {
        "conv1.weight": "conv1_7x7_s2.weight",
        "bn1.running_var": "conv1_7x7_s2_bn.running_var",
        "layer1.0.downsample.0.weight": "conv2_1_1x1_proj.weight",
        "layer1.0.downsample.1.bias": "conv2_1_1x1_proj_bn.bias",
        "layer2.0.conv1.weight": "conv3_1_1x1_reduce.weight",
        "layer3.5.bn2.running_mean": "conv4_6_3x3_bn.running_mean",
        "layer4.2.conv3.weight": "conv5_3_1x1_increase.weight",
        "layer4.2.se.down.bias": "conv5_3_1x1_down.bias",
        "layer4.2.se.up.weight": "conv5_3_1x1_up.weight",
        "embedding.weight": "feat_extract.weight",
    }
    state = net.state_dict()
    for ours, theirs in expected.items():
        assert torch.equal(state[ours], published[theirs]), ours
    assert net.out_channels == 256
    with torch.no_grad():
        out = net.forward_features(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 256, 1, 1) and torch.isfinite(out).all()


def test_senet_converter_refuses_foreign_keys():
    with pytest.raises(ValueError, match="fc.weight"):
        convert_vggface2_senet({"conv1_7x7_s2.weight": torch.zeros(1), "fc.weight": torch.zeros(1)})


IR50_UNITS, IR50_WIDTHS = (3, 4, 14, 3), (64, 128, 256, 512)


def arcface_torch_r50() -> dict:
    """Keys and shapes of insightface's arcface_torch ``iresnet50`` backbone.pth."""
    nbt = ("weight", "bias", "running_mean", "running_var")
    sd = {"conv1.weight": random_tensor("w", (64, 3, 3, 3)), **bn("bn1.", 64, nbt),
          "prelu.weight": random_tensor("w", (64,))}
    in_ch = 64
    for stage, (units, width) in enumerate(zip(IR50_UNITS, IR50_WIDTHS), start=1):
        for unit in range(units):
            p = f"layer{stage}.{unit}."
            sd.update(bn(p + "bn1.", in_ch, nbt))
            sd[p + "conv1.weight"] = random_tensor("w", (width, in_ch, 3, 3))
            sd.update(bn(p + "bn2.", width, nbt))
            sd[p + "prelu.weight"] = random_tensor("w", (width,))
            sd[p + "conv2.weight"] = random_tensor("w", (width, width, 3, 3))
            sd.update(bn(p + "bn3.", width, nbt))
            if unit == 0:
                sd[p + "downsample.0.weight"] = random_tensor("w", (width, in_ch, 1, 1))
                sd.update(bn(p + "downsample.1.", width, nbt))
            in_ch = width
    sd.update(bn("bn2.", 512, nbt))
    sd["fc.weight"] = random_tensor("w", (512, 512 * 7 * 7))
    sd["fc.bias"] = random_tensor("b", (512,))
    sd.update(bn("features.", 512, nbt))
    for key in [k for k in sd if k.endswith("running_var")]:
        sd[key.replace("running_var", "num_batches_tracked")] = torch.tensor(100)
    return sd


def test_iresnet50_loads_arcface_torch_weights_and_embeds_112_crops(tmp_path):
    published = arcface_torch_r50()
    path = tmp_path / "backbone.pth"
    torch.save(published, path)
    model = build_model("iresnet50", {"pretrained": str(path)}, "identity_l2", {}, num_classes=0).eval()
    state = model.backbone.state_dict()
    assert all(torch.equal(state[k], v) for k, v in published.items())
    with torch.no_grad():
        embedding = model.embed(torch.randn(2, 3, 112, 112))
    assert embedding.shape == (2, 512)
    assert torch.allclose(embedding.norm(dim=1), torch.ones(2))
    with pytest.raises(ValueError, match="112x112"):
        model.embed(torch.randn(1, 3, 128, 128))


def mxnet_r50() -> dict:
    """Keys of insightface's MXNet LResNet50E-IR (``mx.nd.load`` of model-0000.params)."""

    def mx_bn(name, channels):
        return {f"arg:{name}_gamma": random_tensor("w", (channels,)),
                f"arg:{name}_beta": random_tensor("b", (channels,)),
                f"aux:{name}_moving_mean": random_tensor("m", (channels,)),
                f"aux:{name}_moving_var": random_tensor("moving_var", (channels,))}

    sd = {"arg:conv0_weight": random_tensor("w", (64, 3, 3, 3)), **mx_bn("bn0", 64),
          "arg:relu0_gamma": random_tensor("w", (64,))}
    in_ch = 64
    for stage, (units, width) in enumerate(zip(IR50_UNITS, IR50_WIDTHS), start=1):
        for unit in range(1, units + 1):
            p = f"stage{stage}_unit{unit}_"
            sd.update(mx_bn(p + "bn1", in_ch))
            sd[f"arg:{p}conv1_weight"] = random_tensor("w", (width, in_ch, 3, 3))
            sd.update(mx_bn(p + "bn2", width))
            sd[f"arg:{p}relu1_gamma"] = random_tensor("w", (width,))
            sd[f"arg:{p}conv2_weight"] = random_tensor("w", (width, width, 3, 3))
            sd.update(mx_bn(p + "bn3", width))
            if unit == 1:
                sd[f"arg:{p}conv1sc_weight"] = random_tensor("w", (width, in_ch, 1, 1))
                sd.update(mx_bn(p + "sc", width))
            in_ch = width
    sd.update(mx_bn("bn1", 512))
    sd["arg:pre_fc1_weight"] = random_tensor("w", (512, 512 * 49))
    sd["arg:pre_fc1_bias"] = random_tensor("b", (512,))
    sd.update(mx_bn("fc1", 512))
    sd["arg:fc7_weight"] = random_tensor("w", (1000, 512))
    return sd


def test_iresnet50_converts_the_insightface_mxnet_layout(tmp_path):
    published = mxnet_r50()
    path = tmp_path / "model-r50.pth"
    torch.save(published, path)
    net = BACKBONES.build("iresnet50", pretrained=str(path))
    state = net.state_dict()
    expected = {
        "conv1.weight": "arg:conv0_weight",
        "bn1.running_mean": "aux:bn0_moving_mean",
        "prelu.weight": "arg:relu0_gamma",
        "layer1.0.downsample.0.weight": "arg:stage1_unit1_conv1sc_weight",
        "layer1.0.downsample.1.running_var": "aux:stage1_unit1_sc_moving_var",
        "layer3.13.prelu.weight": "arg:stage3_unit14_relu1_gamma",
        "layer4.2.bn3.bias": "arg:stage4_unit3_bn3_beta",
        "bn2.weight": "arg:bn1_gamma",
        "fc.weight": "arg:pre_fc1_weight",
        "features.bias": "arg:fc1_beta",
        "features.running_mean": "aux:fc1_moving_mean",
    }
    for ours, theirs in expected.items():
        assert torch.equal(state[ours], published[theirs]), ours
    assert torch.equal(state["features.weight"], torch.ones(512)), "fix_gamma=True: MXNet used a unit scale"
    assert all(m.eps == 2e-5 for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))


def test_mxnet_converter_refuses_foreign_keys():
    with pytest.raises(ValueError, match="stage9"):
        convert_insightface_mxnet({"arg:conv0_weight": torch.zeros(1), "arg:stage9_unit1_conv1_weight": torch.zeros(1)})
