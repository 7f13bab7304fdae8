import pytest
import torch

from retrieval.models import RetrievalNet, build_model, fit_whitening


def small(head="embedding", head_args=None, num_classes=3) -> RetrievalNet:
    torch.manual_seed(0)
    return build_model("small_cnn", {"width": 4}, head, head_args or {"dim": 6}, num_classes).eval()


def test_forward_is_the_head_dict_and_embed_its_embedding():
    model = small("cgd", {"descriptors": "GM", "dim": 8})
    images = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        out = model(images)
        assert set(out) == {"embedding", "logits", "branches"}
        assert torch.equal(model.embed(images), out["embedding"])


def test_bad_arguments_name_the_component_and_what_it_accepts():
    with pytest.raises(ValueError, match="backbone 'resnet18' has no argument 'last_strde'.*remove_downsample"):
        build_model("resnet18", {"last_strde": 1}, "embedding", {}, 1)
    with pytest.raises(ValueError, match="head 'cgd' has no argument 'descriptor'.*Did you mean 'descriptors'"):
        build_model("small_cnn", {}, "cgd", {"descriptor": "SG"}, 1)
    with pytest.raises(KeyError, match="unknown head"):
        build_model("small_cnn", {}, "cdg", {}, 1)


def test_loading_a_state_dict_without_whitening_removes_it():
    model, images = small(), torch.rand(6, 3, 8, 8)
    state = model.state_dict()
    with torch.no_grad():
        model.whitening = fit_whitening("pca", model.embed(images), torch.zeros(6), dim=4)
        model.load_state_dict(state)
        assert model.whitening is None and model.embed(images).shape == (6, 6)
