"""Released checkpoints in each authors' layout, written here from their code's definitions, load into
our models and give the descriptors an independent reference computes from the same layout."""
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from sklearn.decomposition import PCA

from retrieval.data.safe_pickle import UnsafePickleError
from retrieval.models import RetrievalNet, build_model
from retrieval.zoo import load_cirtorch, load_dirtorch

MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
DIM = 16


def random_resnet18(seed: int) -> torchvision.models.ResNet:
    """A torchvision ResNet-18 with random weights and BatchNorm statistics (so eval mode matters)."""
    torch.manual_seed(seed)
    net = torchvision.models.resnet18(weights=None)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def feature_map(net: torchvision.models.ResNet, x: torch.Tensor) -> torch.Tensor:
    """The ResNet without its average pooling and classifier (both zoos' backbone)."""
    return torch.nn.Sequential(*list(net.children())[:-2])(x)


def gem(x: torch.Tensor, p: float) -> torch.Tensor:
    return x.double().clamp(min=1e-6).pow(p).mean(dim=(-2, -1)).pow(1 / p)


def images(n=3, seed=0) -> torch.Tensor:
    return torch.rand(n, 3, 64, 48, generator=torch.Generator().manual_seed(seed))


# --- deep-image-retrieval: dirtorch/nets (ResNet_RMAC), dirtorch/utils/common.py (whiten_features)

class OldPCA:
    """scikit-learn 0.20's PCA as pickled in the released files: ``sklearn.decomposition.pca.PCA``."""


def old_sklearn_pca(fitted: PCA, monkeypatch):
    module = types.ModuleType("sklearn.decomposition.pca")
    OldPCA.__module__, OldPCA.__qualname__ = module.__name__, "PCA"
    module.PCA = OldPCA
    monkeypatch.setitem(sys.modules, module.__name__, module)
    old = OldPCA()
    old.__dict__.update({key: getattr(fitted, key) for key in
                         ("n_components", "copy", "whiten", "svd_solver", "tol", "iterated_power", "random_state",
                          "mean_", "n_components_", "components_", "explained_variance_",
                          "explained_variance_ratio_", "singular_values_", "noise_variance_")},
                        _sklearn_version="0.20.2")
    return old


def write_dirtorch(path, net, p, fc, options, pca, legacy):
    state = {f"module.{k}": v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    state |= {"module.fc.weight": fc.weight.detach(), "module.fc.bias": fc.bias.detach()}
    if p is not None:  # GeneralizedMeanPoolingP's exponent; MAC ("max") has no parameter
        state["module.adpool.p"] = torch.tensor([p])
    checkpoint = {"model_options": options, "state_dict": state, "current_iter": 296,
                  "preprocess": {"mean": MEAN, "std": STD, "input_size": 224},
                  "pca": {"Landmarks_clean": pca}}
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)


def dirtorch_reference(net, p, fc, norm_features, pca, power, x):
    """ResNet_RMAC.forward (GeM, or MAC when ``p`` is None; optional L2; fc unless ``fc`` is None; L2) then
    whiten_features (PCA with power, L2), in float64."""
    maps = feature_map(net, x)
    pooled = maps.double().amax(dim=(-2, -1)) if p is None else gem(maps, p)
    if norm_features:
        pooled = F.normalize(pooled, dim=1)
    desc = F.normalize(pooled if fc is None else pooled @ fc.weight.double().T + fc.bias.double(), dim=1).numpy()
    white = (desc - pca.mean_) @ pca.components_.T / pca.explained_variance_ ** power
    return white / np.linalg.norm(white, axis=1, keepdims=True)


@pytest.mark.parametrize("legacy, norm_features, old_pickle, pooling, without_fc", [
    (True, False, True, "gem", False), (False, True, False, "gem", False), (False, False, False, "max", False),
    (False, False, False, "gem", True)],
    ids=["legacy-format-sklearn-0.20", "zip-format-current-sklearn-norm-features", "mac", "without-fc"])
def test_a_deep_image_retrieval_checkpoint_gives_the_authors_descriptors(tmp_path, monkeypatch, legacy, norm_features,
                                                                         old_pickle, pooling, without_fc):
    net, fc, p = random_resnet18(0), torch.nn.Linear(512, DIM), 2.6 if pooling == "gem" else None
    dim = 512 if without_fc else DIM
    fitted = PCA(whiten=True).fit(np.random.default_rng(0).standard_normal((600, dim)))
    options = {"arch": "resnet18_rmac", "out_dim": DIM, "pooling": pooling, "gemp": 3, "norm_features": norm_features,
               "dropout_p": None, "without_fc": without_fc}
    path = tmp_path / "Resnet18-AP-GeM.pt"
    write_dirtorch(path, net, p, fc, options, old_sklearn_pca(fitted, monkeypatch) if old_pickle else fitted, legacy)
    monkeypatch.delitem(sys.modules, "sklearn.decomposition.pca", raising=False)
    loaded = load_dirtorch(path, "Landmarks_clean", whitening_power=0.25)
    assert isinstance(loaded.model, RetrievalNet) and loaded.model.whitening is not None
    assert loaded.mean == tuple(MEAN) and loaded.std == tuple(STD)
    x = images()
    with torch.no_grad():
        got = loaded.model.embed(x)
        expected = dirtorch_reference(net, p, None if without_fc else fc, norm_features, fitted, 0.25, x)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


def test_a_missing_whitening_names_the_ones_the_file_holds(tmp_path):
    net, fc = random_resnet18(0), torch.nn.Linear(512, DIM)
    fitted = PCA(whiten=True).fit(np.random.default_rng(0).standard_normal((50, DIM)))
    write_dirtorch(tmp_path / "m.pt", net, 3.0, fc, {"arch": "resnet18_rmac", "out_dim": DIM}, fitted, legacy=False)
    with pytest.raises(ValueError, match=r"m\.pt holds no whitening 'Paris'; it holds \['Landmarks_clean'\]"):
        load_dirtorch(tmp_path / "m.pt", "Paris")


# --- cnnimageretrieval-pytorch: cirtorch/networks/imageretrievalnet.py, cirtorch/utils/whiten.py

def write_cirtorch(path, net, p, whiten, lw):
    features = torch.nn.Sequential(*list(net.children())[:-2])
    state = {f"features.{k}": v for k, v in features.state_dict().items()} | {"pool.p": torch.tensor([p])}
    if whiten is not None:
        state |= {"whiten.weight": whiten.weight.detach(), "whiten.bias": whiten.bias.detach()}
    meta = {"architecture": "resnet18", "local_whitening": False, "pooling": "gem", "regional": False,
            "whitening": whiten is not None, "mean": MEAN, "std": STD, "outputdim": 512}
    if lw is not None:
        meta["Lw"] = lw
    torch.save({"epoch": 3, "meta": meta, "state_dict": state, "min_loss": 0.5}, path)


def cirtorch_reference(net, p, whiten, lw, x):
    """ImageRetrievalNet.forward (GeM, L2, optional whiten + L2) then whitenapply (P (x - m), L2), float64."""
    o = F.normalize(gem(feature_map(net, x), p), dim=1)
    if whiten is not None:
        o = F.normalize(o @ whiten.weight.double().T + whiten.bias.double(), dim=1)
    o = o.numpy()
    if lw is not None:
        o = (lw["P"] @ (o.T - lw["m"])).T
        o = o / np.linalg.norm(o, axis=1, keepdims=True)
    return o


def learned_whitening_fields(seed, dim=512):
    rng = np.random.default_rng(seed)
    return {"m": rng.standard_normal((dim, 1)) * 0.01, "P": rng.standard_normal((dim, dim))}


@pytest.mark.parametrize("end_to_end", [True, False], ids=["gem-w", "gem-with-Lw"])
def test_a_cnnimageretrieval_checkpoint_gives_the_authors_descriptors(tmp_path, end_to_end):
    net, p = random_resnet18(1), 3.4
    whiten = torch.nn.Linear(512, 512) if end_to_end else None
    lw = None if end_to_end else {"retrieval-SfM-120k": {"ss": learned_whitening_fields(0),
                                                        "ms": learned_whitening_fields(1)}}
    write_cirtorch(tmp_path / "net.pth", net, p, whiten, lw)
    loaded = load_cirtorch(tmp_path / "net.pth", None if end_to_end else "retrieval-SfM-120k", multiscale=False)
    assert loaded.scale_power == (1.0 if end_to_end else pytest.approx(p))  # cirtorch's msp rule
    x = images(seed=1)
    with torch.no_grad():
        got = loaded.model.embed(x)
        expected = cirtorch_reference(net, p, whiten, None if lw is None else lw["retrieval-SfM-120k"]["ss"], x)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


def test_the_loaded_network_is_our_model_and_fine_tunes(tmp_path):
    net = random_resnet18(2)
    write_cirtorch(tmp_path / "net.pth", net, 3.0, torch.nn.Linear(512, 512), None)
    model = load_cirtorch(tmp_path / "net.pth").model
    model.train()
    loss = model(images(2))["embedding"].sum()
    loss.backward()
    assert model.head.pool.p.grad is not None and model.backbone.conv1.weight.grad is not None
    # A training config starts from it with model.backbone.args.pretrained=<its backbone's state dict>.
    torch.save(model.backbone.state_dict(), tmp_path / "backbone.pth")
    start = build_model("resnet18", {"pretrained": str(tmp_path / "backbone.pth")}, "embedding", {}, num_classes=0)
    with torch.no_grad():
        assert torch.equal(start.eval().backbone(images(1)), model.eval().backbone(images(1)))


# --- untrusted content

class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_code_carrying_object_in_a_released_file_is_refused_before_it_runs(tmp_path, legacy):
    marker = tmp_path / "executed"
    net, fc = random_resnet18(0), torch.nn.Linear(512, DIM)
    fitted = PCA(whiten=True).fit(np.random.default_rng(0).standard_normal((50, DIM)))
    path = tmp_path / "evil.pt"
    write_dirtorch(path, net, 3.0, fc, {"arch": "resnet18_rmac", "out_dim": DIM}, fitted, legacy)
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["pca"]["Landmarks_clean"] = Payload(marker)
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)
    refused = r"refusing to load .*evil\.pt: it references (builtins|__builtin__)\.exec"
    with pytest.raises(UnsafePickleError, match=refused):
        load_dirtorch(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the unrestricted loader would have run it: the payload is real
    assert marker.exists()


class Watch:
    """Like the training-progress objects some checkpoints pickle (dirtorch's ``utils.watcher``)."""


def test_an_unknown_class_in_a_released_file_is_refused_by_name(tmp_path):
    torch.save({"meta": {"architecture": "resnet18"}, "state_dict": {}, "watch": Watch()}, tmp_path / "x.pth")
    with pytest.raises(UnsafePickleError, match=r"x\.pth: it references .*test_loaders\.Watch"):
        load_cirtorch(tmp_path / "x.pth")


@pytest.mark.parametrize("options, message", [
    ({"arch": "resnet18_rmac", "center_bias": 1.0}, r"\['center_bias'\] change the descriptor"),
    ({"arch": "resnet18_rmac", "colour": 1}, r"\['colour'\] are not arguments"),
    ({"arch": "resnet101_fpn_rmac"}, r"architecture 'resnet101_fpn' is not one of our backbones"),
])
def test_options_our_models_do_not_reproduce_are_refused_naming_them(tmp_path, options, message):
    torch.save({"model_options": options, "state_dict": {}}, tmp_path / "m.pt")
    with pytest.raises(ValueError, match=message):
        load_dirtorch(tmp_path / "m.pt")


def test_cnnimageretrieval_multiscale_descriptors_with_the_multiscale_learned_whitening(tmp_path):
    """cirtorch's extract_ms (plain bilinear resizing, (mean of d^p)^(1/p) with p the GeM exponent, L2),
    then whitenapply with Lw[...]['ms'], against our extraction with the zoo's settings."""
    from torchvision import transforms as T

    from retrieval.data.loading import ImageDataset
    from retrieval.data.split import Split
    from retrieval.engine.extract import extract_features

    net, p, scales = random_resnet18(4), 2.9, (1.0, 2 ** -0.5, 0.5)
    lw = {"retrieval-SfM-120k": {"ss": learned_whitening_fields(2), "ms": learned_whitening_fields(3)}}
    write_cirtorch(tmp_path / "net.pth", net, p, None, lw)
    loaded = load_cirtorch(tmp_path / "net.pth", "retrieval-SfM-120k", multiscale=True)
    pixels = [np.random.default_rng(i).integers(0, 256, (70, 50, 3), dtype=np.uint8) for i in range(3)]
    data = ImageDataset(Split("test", labels=np.zeros(3), images=pixels), T.ToTensor())
    got = extract_features(loaded.model, data, scales=scales, scale_power=loaded.scale_power, antialias=False,
                           progress=False)
    rows = []
    with torch.no_grad():
        for image in pixels:
            x = T.ToTensor()(image)[None]
            total = 0
            for s in scales:
                resized = x if s == 1 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
                total = total + torch.tensor(cirtorch_reference(net, p, None, None, resized)) ** p
            v = (total / len(scales)) ** (1 / p)
            rows.append((v / v.norm()).numpy()[0])
    expected = cirtorch_reference_whiten(np.stack(rows), lw["retrieval-SfM-120k"]["ms"])
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


def cirtorch_reference_whiten(x, lw):
    white = (lw["P"] @ (x.T - lw["m"])).T
    return white / np.linalg.norm(white, axis=1, keepdims=True)
