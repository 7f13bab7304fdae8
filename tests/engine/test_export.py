"""Exporting descriptors of image files: resumable shards, unreadable files named, bad input refused; the index."""
import numpy as np
import pytest
import torch
from PIL import Image

import retrieval.engine.export as export
from retrieval.engine.export import NoImagesError, export_features, list_images
from retrieval.engine.saved_model import SavedModel
from retrieval.engine.search import FeatureIndex
from retrieval.models import build_model


@pytest.fixture
def saved(tiny_config, tmp_path):
    torch.manual_seed(0)
    model = build_model("small_cnn", {"width": 4}, "embedding", {"dim": 6}, num_classes=0).eval()
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"stand-in for the model file: its size and time key the resumable parts")
    return SavedModel(model, tiny_config(), weights, torch.device("cpu"))


def write_images(folder, count, seed=0):
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"sub{i % 2}" / f"img{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(9 + i % 3, 10, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return sorted(paths)


def reference(saved, paths) -> np.ndarray:
    transform = saved.transform()
    with torch.no_grad():
        rows = [saved.model.embed(transform(Image.open(p).convert("RGB"))[None])[0] for p in paths]
    return torch.nn.functional.normalize(torch.stack(rows), dim=1).numpy()


def test_interrupted_extraction_resumes_at_the_first_missing_shard(saved, tmp_path, monkeypatch):
    paths = write_images(tmp_path / "images", 7)
    (tmp_path / "images" / "sub1" / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    output = tmp_path / "index.npz"
    real, calls = export.extract_shard, []

    def dies_on_third_shard(*args):
        calls.append(args[1])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(export, "extract_shard", dies_on_third_shard)
    with pytest.raises(KeyboardInterrupt):
        export_features(saved, tmp_path / "images", output, batch_size=2, shard_size=3, progress=False)
    assert not output.exists() and len(list((tmp_path / "index.npz.parts").glob("shard-*.npz"))) == 2
    calls.clear()
    result = export_features(saved, tmp_path / "images", output, batch_size=2, shard_size=3, progress=False)
    assert len(calls) == 1  # only the missing third shard was extracted again
    assert result.count == 7 and result.skipped == [str(tmp_path / "images" / "sub1" / "bad.jpg")]
    assert "cannot read image" in result.reasons[0] and not (tmp_path / "index.npz.parts").exists()
    with np.load(output) as data:
        assert data["paths"].tolist() == paths
        np.testing.assert_allclose(data["features"], reference(saved, paths), atol=1e-5)
    with pytest.raises(FileExistsError, match="index.npz exists"):
        export_features(saved, tmp_path / "images", output, progress=False)


def test_parts_of_another_image_list_are_refused(saved, tmp_path, monkeypatch):
    write_images(tmp_path / "a", 4)
    monkeypatch.setattr(export, "extract_shard", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        export_features(saved, tmp_path / "a", tmp_path / "i.npz", shard_size=2, progress=False)
    write_images(tmp_path / "a", 5)
    with pytest.raises(ValueError, match="another images, paths_digest"):
        export_features(saved, tmp_path / "a", tmp_path / "i.npz", shard_size=2, progress=False)


def test_bad_image_sources_are_named(saved, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(NoImagesError, match=f"no images under folder {tmp_path / 'empty'}"):
        list_images(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such folder or list file"):
        list_images(tmp_path / "missing")
    paths = write_images(tmp_path / "images", 2)
    listing = tmp_path / "list.txt"
    listing.write_text("# my images\nimages/sub0/img00.png\n\nimages/sub1/img01.png\n")
    assert list_images(listing) == paths
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"nothing")
    with pytest.raises(ValueError, match="none of the 1 images could be read"):
        export_features(saved, tmp_path / "bad", tmp_path / "o.npz", progress=False)


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_index_search_is_exact(backend):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(50, 8))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    index = FeatureIndex(features.astype(np.float32), [f"f{i}" for i in range(50)], backend=backend)
    queries = rng.normal(size=(4, 8))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    for _ in range(2):  # built once, queried again
        found = index.search(queries.astype(np.float32), 6)
        order = np.argsort(-(queries @ features.T), axis=1, kind="stable")[:, :6]
        np.testing.assert_array_equal(found.indices.numpy(), order)
    with pytest.raises(ValueError, match="dimension 3 but the index has 8"):
        index.search(np.ones((1, 3), np.float32), 2)


def test_a_tampered_index_is_refused(saved, tmp_path):
    """The index carries a digest written with it; search checks it (a flipped feature bit is named)."""
    write_images(tmp_path / "images", 3)
    output = tmp_path / "index.npz"
    export_features(saved, tmp_path / "images", output, progress=False)
    assert len(FeatureIndex.load(output)) == 3
    with np.load(output) as data:
        arrays = dict(data)
    arrays["features"][0, 0] = np.nextafter(arrays["features"][0, 0], np.float32(1))
    with open(output, "wb") as handle:
        np.savez(handle, **arrays)
    with pytest.raises(ValueError, match=r"index\.npz cannot be trusted: .*does not match its digest index\.sha256"):
        FeatureIndex.load(output)
    (tmp_path / "index.sha256").unlink()
    with pytest.raises(ValueError, match="no digest beside it"):
        FeatureIndex.load(output)
