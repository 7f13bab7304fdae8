"""``python -m retrieval zoo`` end to end on the revisited-dataset fixture with a fixture checkpoint."""
import json

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from torchvision import transforms as T

from retrieval.cli import main
from retrieval.data.datasets.revisited import roxford5k
from retrieval.data.loading import ImageDataset
from retrieval.evaluation.revisited import evaluate_revisited
from retrieval.zoo.evaluate import evaluate_zoo
from retrieval.zoo.registry import ZOO
from tests.data.fixtures import write_image, write_lines, write_revisited
from tests.evaluation.test_postprocess import brute_force_alpha_qe
from tests.zoo.test_loaders import DIM, MEAN, STD, dirtorch_reference, random_resnet18, write_dirtorch

NAME = "Resnet101-AP-GeM"  # the registry entry; the fixture file is a small ResNet-18 in the same layout


@pytest.fixture
def released(tmp_path):
    net, fc, p = random_resnet18(3), torch.nn.Linear(512, DIM), 2.8
    fitted = PCA(whiten=True).fit(np.random.default_rng(3).standard_normal((100, DIM)))
    path = tmp_path / "Resnet101-AP-GeM.pt"
    write_dirtorch(path, net, p, fc, {"arch": "resnet18_rmac", "out_dim": DIM, "pooling": "gem"}, fitted, legacy=True)
    return path, (net, p, fc, fitted)


def reference_metrics(root, parts, distractors_root=None, power=0.25, qe=None) -> dict:
    """Descriptors from the layout's definition (float64) over the fixture's images, optionally
    alpha-QE by brute force, then the protocol."""
    split = roxford5k(str(root), distractors_root=distractors_root)["test"]
    data = ImageDataset(split, T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)]), crop_boxes=True)
    net, p, fc, fitted = parts
    with torch.no_grad():
        desc = np.concatenate([dirtorch_reference(net, p, fc, False, fitted, power, data[i][0][None])
                               for i in range(len(data))])
    queries = split.roles == "query"
    expanded = desc[queries] if qe is None else brute_force_alpha_qe(desc[queries], desc[~queries], *qe)
    return evaluate_revisited(expanded @ desc[~queries].T, split.extra["gnd"])


def test_zoo_evaluate_writes_our_numbers_beside_the_published_ones(tmp_path, released, capsys):
    weights, parts = released
    truth = write_revisited(tmp_path / "data" / "roxford5k", "roxford5k", database=6, queries=(0, 3))
    assert truth["gnd"]
    out = tmp_path / "results"
    assert main(["zoo", "evaluate", NAME, "--weights", str(weights), "--dataset", "roxford5k",
                 "--data-root", str(tmp_path / "data"), "--output", str(out), "--quiet"]) == 0
    rows = {(r["dataset"], r["setup"], r["metric"]): r for r in json.loads((out / "results.json").read_text())["rows"]}
    expected = reference_metrics(tmp_path / "data" / "roxford5k", parts)
    for setup in ("easy", "medium", "hard"):
        for metric in ("map", "mp@1", "mp@5", "mp@10"):
            assert rows[("roxford5k", setup, metric)]["ours"] == pytest.approx(100 * expected[setup][metric], abs=0.01)
    medium = rows[("roxford5k", "medium", "map")]
    published, source = ZOO[NAME].published[("roxford5k", "medium", "map")]
    assert medium["published"] == published and medium["source"] == source
    assert medium["difference"] == pytest.approx(medium["ours"] - published, abs=0.011)
    table = (out / "results.md").read_text()
    assert "| roxford5k | medium | map |" in table and "naver/deep-image-retrieval README" in table
    assert "power 0.25" in table
    assert f"python data_prep/revisitop1m.py --root {tmp_path / 'data' / 'revisitop1m'}" in capsys.readouterr().err


def test_zoo_evaluate_says_which_file_to_download_and_which_data_to_prepare(tmp_path, released, capsys):
    assert main(["zoo", "evaluate", NAME, "--data-root", str(tmp_path)]) == 1
    message = capsys.readouterr().err
    assert "Download Resnet101-AP-GeM (Resnet101-AP-GeM.pt) from https://drive.google.com/open?id=" in message
    assert "--weights weights/zoo/Resnet101-AP-GeM.pt" in message
    weights, _ = released
    assert main(["zoo", "evaluate", NAME, "--weights", str(weights), "--dataset", "rparis6k",
                 "--data-root", str(tmp_path / "none")]) == 1
    assert (f"rparis6k is not prepared: {tmp_path / 'none' / 'rparis6k'}/gnd_rparis6k.pkl is missing. Prepare it "
            f"with python data_prep/rparis6k.py --root {tmp_path / 'none' / 'rparis6k'}") in capsys.readouterr().err


def test_a_released_file_whose_digest_differs_from_its_name_is_refused(tmp_path, capsys):
    name = "gl18-tl-resnet50-gem-w"
    write_revisited(tmp_path / "data" / "roxford5k", "roxford5k")
    weights = tmp_path / ZOO[name].file_name
    weights.write_bytes(b"not the released file")
    with pytest.raises(SystemExit, match=r"does not start with 83fdc30.*download it again from http://cmp"):
        main(["zoo", "evaluate", name, "--weights", str(weights), "--dataset", "roxford5k",
              "--data-root", str(tmp_path / "data")])


def test_zoo_list_names_every_file_its_source_and_published_numbers(capsys):
    assert main(["zoo", "list"]) == 0
    text = capsys.readouterr().out
    for entry in ZOO.values():
        assert entry.name in text and entry.url in text and entry.file_name in text
    assert "published roxford5k medium map: 67.1 [1]" in text
    assert "filipradenovic/cnnimageretrieval-pytorch README" in text


def test_r1m_rows_are_added_when_the_distractors_are_prepared(tmp_path, released):
    weights, parts = released
    write_revisited(tmp_path / "data" / "roxford5k", "roxford5k", database=6, queries=(0, 3))
    r1m = tmp_path / "data" / "revisitop1m"
    names = [f"{d}/{d}{i}.jpg" for d, i in (("a", 1), ("b", 2), ("b", 3))]
    for seed, name in enumerate(names):
        write_image(r1m / "jpg" / name, seed=20 + seed)
    write_lines(r1m / "revisitop1m.txt", names)
    out = tmp_path / "results"
    evaluate_zoo(NAME, str(weights), ["roxford5k"], str(tmp_path / "data"), out, progress=False)
    rows = {(r["dataset"], r["setup"], r["metric"]): r for r in json.loads((out / "results.json").read_text())["rows"]}
    expected = reference_metrics(tmp_path / "data" / "roxford5k", parts, distractors_root=str(r1m))
    hard = rows[("roxford5k+r1m", "hard", "map")]
    assert hard["ours"] == pytest.approx(100 * expected["hard"]["map"], abs=0.01)
    assert hard["published"] is None and hard["source"] == ""  # no source gives this network's +R1M number
    assert ("roxford5k", "hard", "map") in rows


def test_zoo_evaluate_with_another_whitening_power_and_alpha_qe(tmp_path, released):
    weights, parts = released
    write_revisited(tmp_path / "data" / "roxford5k", "roxford5k", database=6, queries=(0, 3))
    out = tmp_path / "results"
    assert main(["zoo", "evaluate", NAME, "--weights", str(weights), "--dataset", "roxford5k", "--quiet",
                 "--data-root", str(tmp_path / "data"), "--output", str(out), "--whitening-power", "0.5",
                 "--qe", "2", "3"]) == 0
    result = json.loads((out / "results.json").read_text())
    assert "power 0.5" in result["settings"] and "alpha-QE k=2 alpha=3.0" in result["settings"]
    expected = reference_metrics(tmp_path / "data" / "roxford5k", parts, power=0.5, qe=(2, 3.0))
    for row in result["rows"]:
        assert row["ours"] == pytest.approx(100 * expected[row["setup"]][row["metric"]], abs=0.01)
