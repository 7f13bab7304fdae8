"""ROxford5k / RParis6k from a real gnd pickle: queries first (boxes), then database, R1M distractors."""
import pickle

import numpy as np
import pytest
from fixtures import IMAGE_SIZE, crop_sizes, write_image, write_lines, write_revisited

from retrieval.data.datasets.parsing import DatasetFormatError
from retrieval.data.safe_pickle import UnsafePickleError
from retrieval.data.split import GALLERY, QUERY, load_splits


@pytest.mark.parametrize("name", ["roxford5k", "rparis6k"])
def test_queries_then_database(tmp_path, name):
    data = write_revisited(tmp_path, name)
    split = load_splits(name, str(tmp_path))["test"]
    nq, nd = len(data["qimlist"]), len(data["imlist"])
    assert split.paths == [f"jpg/{q}.jpg" for q in data["qimlist"]] + [f"jpg/{d}.jpg" for d in data["imlist"]]
    assert split.roles.tolist() == [QUERY] * nq + [GALLERY] * nd
    assert (split.labels == -1).all()
    np.testing.assert_array_equal(split.boxes[:nq], [g["bbx"] for g in data["gnd"]])
    assert np.isnan(split.boxes[nq:]).all()
    assert crop_sizes(split) == [(18, 15)] * nq + [IMAGE_SIZE] * nd  # queries cropped, database whole
    for got, wrote in zip(split.extra["gnd"], data["gnd"]):
        for key in ("easy", "hard", "junk"):
            np.testing.assert_array_equal(got[key], wrote[key])
    assert split.extra["num_distractors"] == 0


def test_names_that_carry_their_extension_keep_it(tmp_path):
    """deep-image-retrieval's reader keeps an image name's own extension; revisitop's names have none."""
    data = write_revisited(tmp_path, "roxford5k", extension=".jpg")
    split = load_splits("roxford5k", str(tmp_path))["test"]
    assert split.paths == [f"jpg/{n}" for n in data["qimlist"] + data["imlist"]]
    assert all((tmp_path / p).is_file() for p in split.paths)


def test_r1m_distractors_are_appended_to_the_gallery(tmp_path):
    data = write_revisited(tmp_path / "roxford5k", "roxford5k")
    r1m = tmp_path / "revisitop1m"
    names = ["0/00/000001.jpg", "0/00/000002.jpg"]
    write_lines(r1m / "revisitop1m.txt", names)
    for name in names:
        write_image(r1m / "jpg" / name)
    split = load_splits("roxford5k", str(tmp_path / "roxford5k"), distractors_root=str(r1m))["test"]
    assert split.paths[-2:] == [str(r1m / "jpg" / n) for n in names]
    beside = load_splits("roxford5k", str(tmp_path / "roxford5k"), distractors_root="revisitop1m")["test"]
    assert beside.paths == split.paths, "a relative distractors_root is taken beside the dataset's folder"
    assert split.roles.tolist()[-3:] == [GALLERY] * 3 and split.extra["num_distractors"] == 2
    assert len(split) == len(data["qimlist"]) + len(data["imlist"]) + 2
    assert crop_sizes(split)[-1] == IMAGE_SIZE  # absolute paths load despite the split's root


def test_a_malicious_pickle_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "gnd_roxford5k.pkl").write_bytes(pickle.dumps({"imlist": [], "qimlist": [], "gnd": [Payload()]}))
    with pytest.raises(UnsafePickleError, match=r"gnd_roxford5k\.pkl.*builtins\.print"):
        load_splits("roxford5k", str(tmp_path))


def test_ground_truth_out_of_range_is_named(tmp_path):
    data = write_revisited(tmp_path, "rparis6k")
    data["gnd"][1]["junk"] = np.array([len(data["imlist"])])
    (tmp_path / "gnd_rparis6k.pkl").write_bytes(pickle.dumps(data))
    with pytest.raises(DatasetFormatError, match=r"gnd\[1\]\['junk'\] holds values that are not database indices"):
        load_splits("rparis6k", str(tmp_path))


def test_paris_preparation_flattens_the_nested_archives(tmp_path):
    """paris_1/2-v1.tgz nest images by landmark; the script gathers them in jpg/ beside the pickle."""
    import subprocess
    import sys
    import tarfile
    from pathlib import Path

    staging, downloads, root = tmp_path / "staging", tmp_path / "downloads", tmp_path / "root"
    data = write_revisited(staging, "rparis6k")
    downloads.mkdir()
    for part, images in ((1, data["imlist"][:3]), (2, data["imlist"][3:])):
        with tarfile.open(downloads / f"paris_{part}-v1.tgz", "w:gz") as tar:
            for n, image in enumerate(images):
                tar.add(staging / "jpg" / f"{image}.jpg", arcname=f"paris/landmark{n % 2}/{image}.jpg")
    (downloads / "gnd_rparis6k.pkl").write_bytes((staging / "gnd_rparis6k.pkl").read_bytes())
    script = Path(__file__).resolve().parents[2] / "data_prep" / "rparis6k.py"
    result = subprocess.run([sys.executable, str(script), "--root", str(root), "--downloads", str(downloads),
                             "--no-download"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in (root / "jpg").iterdir() if not p.name.startswith(".")) == \
        sorted(f"{image}.jpg" for image in data["imlist"])
    split = load_splits("rparis6k", str(root))["test"]
    assert all((root / p).is_file() for p in split.paths)


def test_index_lists_may_be_plain_lists_or_whole_floats(tmp_path):
    data = write_revisited(tmp_path, "roxford5k")
    data["gnd"][0].update(easy=[1, 2], hard=np.array([4.0]), junk=[])
    (tmp_path / "gnd_roxford5k.pkl").write_bytes(pickle.dumps(data))
    gnd = load_splits("roxford5k", str(tmp_path))["test"].extra["gnd"][0]
    assert [gnd[k].tolist() for k in ("easy", "hard", "junk")] == [[1, 2], [4], []]
    assert all(gnd[k].dtype == np.int64 for k in ("easy", "hard", "junk"))
    data["gnd"][0]["hard"] = np.array([1.5])
    (tmp_path / "gnd_roxford5k.pkl").write_bytes(pickle.dumps(data))
    with pytest.raises(DatasetFormatError, match=r"gnd\[0\]\['hard'\]"):
        load_splits("roxford5k", str(tmp_path))
