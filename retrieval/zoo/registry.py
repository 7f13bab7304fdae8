"""The released networks the zoo knows: where each file comes from, its expected name, its checksum
where one is public, how its authors evaluated it, and their published numbers with the source.

Sources (numbers are percentages as printed there):

- ``A``: the model-zoo table of naver/deep-image-retrieval's README (version of 2019-09-05, commit
  3da005b "update mAP numbers", unchanged since): single scale, PCA whitening learned on
  Landmarks-clean with power 0.25, ROxford5k / RParis6k Medium and Hard mAP. The same README gives
  the expected RParis6k output of ResNet-101 AP GeM: Easy 90.76, Medium 80.31, Hard 60.86.
- ``G``: README of filipradenovic/cnnimageretrieval-pytorch (commit 1e66a417, June 2022), "networks with
  whitening learned end-to-end": multi-scale (1, 2^(1/2), 1/2^(1/2)), Medium and Hard mAP.
"""
from __future__ import annotations

from dataclasses import dataclass, field

DIRTORCH, CIRTORCH = "deep-image-retrieval", "cnnimageretrieval-pytorch"
SOURCE_A = ("naver/deep-image-retrieval README, model-zoo table (commit 3da005b, 2019-09-05): single scale, "
            "PCA whitening (Landmarks_clean, power 0.25)")
SOURCE_A_OUTPUT = "naver/deep-image-retrieval README, expected output of test_dir.py for RParis6K"
SOURCE_G = ("filipradenovic/cnnimageretrieval-pytorch README (commit 1e66a417, 2022-06), networks with whitening "
            "learned end-to-end, multi-scale 1, 2^(1/2), 1/2^(1/2)")
CIRTORCH_SCALES = (1.0, 2 ** 0.5, 2 ** -0.5)  # Source G
#: The scales the same README's "Testing our pretrained networks" commands give for the TPAMI 2018 networks.
CIRTORCH_TPAMI_SCALES = (1.0, 2 ** -0.5, 0.5)
CIRTORCH_URL = "http://cmp.felk.cvut.cz/cnnimageretrieval/data/networks/"


@dataclass(frozen=True)
class ZooEntry:
    """One released file. ``published``: ``{(dataset, setup, metric): (value in percent, source)}``.

    ``sha256_prefix``: the hex prefix its file name carries (torch hub's convention), checked when
    set. ``whitening``: the name of the whitening stored in the file that the published numbers use
    (None: the network's own). ``whitening_power``, ``scales`` and ``antialias`` (of the downscaled
    images): the authors' evaluation settings.
    """

    name: str
    layout: str
    url: str
    file_name: str
    description: str
    scales: tuple[float, ...] = (1.0,)
    whitening: str | None = None
    whitening_power: float = 0.5
    antialias: bool = True
    sha256_prefix: str | None = None
    other_names: tuple[str, ...] = ()
    published: dict = field(default_factory=dict)


def _medium_hard(values: tuple[float, float, float, float], source: str, order: str) -> dict:
    """Published Medium/Hard mAP given in ``order`` ("ROxf M, ROxf H, RPar M, RPar H" or "M M H H")."""
    cells = {"mhmh": [("roxford5k", "medium"), ("roxford5k", "hard"), ("rparis6k", "medium"), ("rparis6k", "hard")],
             "mmhh": [("roxford5k", "medium"), ("rparis6k", "medium"), ("roxford5k", "hard"), ("rparis6k", "hard")]}
    return {(dataset, setup, "map"): (value, source) for (dataset, setup), value in zip(cells[order], values)}


def _dirtorch(name: str, drive_id: str, description: str, numbers: tuple, other_names: tuple[str, ...] = (),
              extra: dict | None = None) -> ZooEntry:
    return ZooEntry(
        name=name, layout=DIRTORCH, url=f"https://drive.google.com/open?id={drive_id}", file_name=f"{name}.pt",
        description=description, whitening="Landmarks_clean", whitening_power=0.25, other_names=other_names,
        published=_medium_hard(numbers, SOURCE_A, "mhmh") | (extra or {}))


def _cirtorch(name: str, folder: str, digest: str, description: str, numbers: tuple | None,
              scales: tuple[float, ...] = CIRTORCH_SCALES, whitening: str | None = None) -> ZooEntry:
    return ZooEntry(
        name=name, layout=CIRTORCH, url=f"{CIRTORCH_URL}{folder}/{name}-{digest}.pth", file_name=f"{name}-{digest}.pth",
        description=description, scales=scales, whitening=whitening, sha256_prefix=digest,
        antialias=False,  # cirtorch's extract_ms: F.interpolate(bilinear, align_corners=False), no antialiasing
        published=_medium_hard(numbers, SOURCE_G, "mmhh") if numbers else {})


ZOO: dict[str, ZooEntry] = {entry.name: entry for entry in [
    # Source A; the Google Drive ids are those of the README's table.
    _dirtorch("Resnet101-TL-MAC", "13MUGNwn_CYGZvqDBD8FGD8fVYxThsSDg", "ResNet-101, triplet loss, MAC, Landmarks-clean",
              (63.3, 35.7, 76.6, 55.5)),
    _dirtorch("Resnet101-TL-GeM", "1vhm1GYvn8T3-1C4SPjPNJOuTU9UxKAG6", "ResNet-101, triplet loss, GeM, Landmarks-clean",
              (64.5, 40.9, 78.8, 59.2)),
    _dirtorch("Resnet50-AP-GeM", "1oPtE_go9tnsiDLkWjN4NMpKjh-_md1G5", "ResNet-50, AP loss, GeM, Landmarks-clean",
              (65.5, 41.0, 77.6, 57.1)),
    _dirtorch("Resnet101-AP-GeM", "1UWJGDuHtzaQdFhSMojoYVQjmCXhIwVvy", "ResNet-101, AP loss, GeM, Landmarks-clean",
              (67.1, 42.3, 80.3, 60.9), other_names=("Resnet-101-AP-GeM.pt",),
              extra={("rparis6k", "easy", "map"): (90.76, SOURCE_A_OUTPUT)}),
    _dirtorch("Resnet101-AP-GeM-LM18", "1r76NLHtJsH-Ybfda4aLkUIoW3EEsi25I",
              "ResNet-101, AP loss, GeM, Google-Landmarks-18", (66.3, 42.5, 80.2, 60.8)),
    # Source G; file names and digests from cirtorch/examples/test.py's PRETRAINED table.
    _cirtorch("rSfM120k-tl-resnet50-gem-w", "retrieval-SfM-120k", "97bf910", "ResNet-50 GeM + whitening, SfM-120k",
              (64.7, 76.3, 39.0, 54.9)),
    _cirtorch("rSfM120k-tl-resnet101-gem-w", "retrieval-SfM-120k", "a155e54", "ResNet-101 GeM + whitening, SfM-120k",
              (67.8, 77.6, 41.7, 56.3)),
    _cirtorch("rSfM120k-tl-resnet152-gem-w", "retrieval-SfM-120k", "f39cada", "ResNet-152 GeM + whitening, SfM-120k",
              (68.8, 78.0, 41.3, 57.2)),
    _cirtorch("gl18-tl-resnet50-gem-w", "gl18", "83fdc30", "ResNet-50 GeM + whitening, Google-Landmarks-18",
              (63.6, 78.0, 40.9, 57.5)),
    _cirtorch("gl18-tl-resnet101-gem-w", "gl18", "a4d43db", "ResNet-101 GeM + whitening, Google-Landmarks-18",
              (67.3, 80.6, 44.3, 61.5)),
    _cirtorch("gl18-tl-resnet152-gem-w", "gl18", "21278d5", "ResNet-152 GeM + whitening, Google-Landmarks-18",
              (68.7, 79.7, 44.2, 60.3)),
    # The TPAMI 2018 network with its post-processing learned whitening (meta['Lw']); no confirmed numbers here.
    _cirtorch("retrievalSfM120k-resnet101-gem", "retrieval-SfM-120k", "b80fb85",
              "ResNet-101 GeM, SfM-120k, learned whitening retrieval-SfM-120k", None, scales=CIRTORCH_TPAMI_SCALES,
              whitening="retrieval-SfM-120k"),
]}


def entry(name: str) -> ZooEntry:
    """The zoo entry ``name``; a KeyError listing the known names otherwise."""
    if name not in ZOO:
        from retrieval.registry import closest

        raise KeyError(f"no released network {name!r} in the zoo; known: {', '.join(ZOO)}." + closest(name, list(ZOO)))
    return ZOO[name]
