"""Writers of tiny datasets in their exact official layouts, for the parser, verify and prep tests.

Each writer returns the truth it wrote (paths, labels, boxes per split), built from its own
arguments, so the tests compare the parser with what was put on disk, not with itself.
"""
from __future__ import annotations

import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from retrieval.data.loading import ImageDataset

IMAGE_SIZE = (40, 30)  # (width, height) of every fixture image


def write_image(path: Path, size: tuple[int, int] = IMAGE_SIZE, seed: int = 0) -> Path:
    """A real image file (format from the suffix: .jpg/.JPG JPEG, .png PNG) of random colours."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG" if path.suffix.lower() == ".png" else "JPEG")
    return path


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a file to ``keep`` of its size, as an interrupted copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def write_decompression_bomb(path: Path, side: int = 15_000) -> Path:
    """A valid ``side`` x ``side`` black 1-bit PNG: a few kilobytes on disk, ``side``² pixels once decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(bytes((1 + (side + 7) // 8) * side), 9)  # each row: filter byte 0, then zero bits
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


def crop_sizes(split) -> list[tuple[int, int]]:
    """(width, height) of every item of ``split`` as the loader gives it with ``crop_boxes=True``."""
    data = ImageDataset(split, transform=lambda image: image.size, crop_boxes=True)
    return [data[i][0] for i in range(len(data))]


def write_lines(path: Path, lines) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def write_cars196(root: Path, classes=(1, 2, 98, 99, 100, 196), per_class: int = 2) -> list[dict]:
    """``cars_annos.mat`` (struct array ``annotations`` + ``class_names``) and ``car_ims/``."""
    from scipy.io import savemat

    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    records = []
    for n, label in enumerate(c for c in classes for _ in range(per_class)):
        path = f"car_ims/{n + 1:06d}.jpg"
        write_image(root / path, seed=n)
        box = (2 + n, 3, 22 + n, 18)  # 20 x 15 pixels
        records.append({"path": path, "label": label, "box": box, "test": n % 2})
    annotations = np.empty((1, len(records)), dtype=[(f, object) for f in fields])
    for i, r in enumerate(records):
        annotations[0, i] = (r["path"], np.uint16(r["box"][0]), np.uint16(r["box"][1]), np.uint16(r["box"][2]),
                             np.uint16(r["box"][3]), np.uint8(r["label"]), np.uint8(r["test"]))
    names = np.empty((1, 196), dtype=object)
    names[0, :] = [f"Make Model {c}" for c in range(1, 197)]
    savemat(root / "cars_annos.mat", {"annotations": annotations, "class_names": names})
    return records


def write_cars196_devkit(root: Path, test_labels_in_devkit: bool = False) -> list[dict]:
    """The devkit layout: ``cars_train/``, ``cars_test/``, ``devkit/{cars_train_annos,cars_meta}.mat`` and
    ``cars_test_annos_withlabels.mat`` (root, or ``devkit/``), each struct with bbox_x1..y2, class, fname."""
    from scipy.io import savemat

    halves = {"cars_train": [1, 99, 196], "cars_test": [2, 98, 99]}
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    records = []
    for folder, classes in halves.items():
        rows = []
        for n, label in enumerate(classes):
            fname = f"{n + 1:05d}.jpg"  # each half numbers its own files from 00001
            write_image(root / folder / fname, seed=len(records))
            box = (1 + n, 2, 17 + n, 14)  # 16 x 12 pixels
            records.append({"path": f"{folder}/{fname}", "label": label, "box": box})
            rows.append(box + (label, fname))
        annotations = np.empty((1, len(rows)), dtype=[(f, object) for f in fields])
        for i, (x1, y1, x2, y2, label, fname) in enumerate(rows):
            annotations[0, i] = (np.uint16(x1), np.uint16(y1), np.uint16(x2), np.uint16(y2), np.uint8(label), fname)
        target = (root / "devkit" / "cars_train_annos.mat" if folder == "cars_train" else
                  root / ("devkit" if test_labels_in_devkit else "") / "cars_test_annos_withlabels.mat")
        target.parent.mkdir(parents=True, exist_ok=True)
        savemat(target, {"annotations": annotations})
    names = np.empty((1, 196), dtype=object)
    names[0, :] = [f"Devkit Model {c}" for c in range(1, 197)]
    savemat(root / "devkit" / "cars_meta.mat", {"class_names": names})
    return records


def write_cub200(root: Path, classes=(1, 2, 100, 101, 200), per_class: int = 2) -> list[dict]:
    """``CUB_200_2011/`` with images.txt, image_class_labels.txt, bounding_boxes.txt and images/."""
    base = root / "CUB_200_2011"
    records = []
    for n, label in enumerate(c for c in classes for _ in range(per_class)):
        path = f"{label:03d}.Bird_{label}/Bird_{label}_{n:04d}_{100 + n}.jpg"
        write_image(base / "images" / path, seed=n)
        records.append({"id": n + 1, "path": path, "label": label, "xywh": (1.0 + n, 2.0, 12.0, 9.0)})
    write_lines(base / "images.txt", [f"{r['id']} {r['path']}" for r in records])
    write_lines(base / "image_class_labels.txt", [f"{r['id']} {r['label']}" for r in records])
    write_lines(base / "bounding_boxes.txt", [f"{r['id']} " + " ".join(f"{v:.1f}" for v in r["xywh"])
                                              for r in records])
    return records


def write_sop(root: Path) -> dict[str, list[tuple[str, int]]]:
    """``Stanford_Online_Products/`` with Ebay_train.txt, Ebay_test.txt and the category folders."""
    base = root / "Stanford_Online_Products"
    splits = {"train": [("bicycle_final/111085122871_0.JPG", 1, 1), ("bicycle_final/111085122871_1.JPG", 1, 1),
                        ("chair_final/111122654841_0.JPG", 2, 5)],
              "test": [("sofa_final/111265328556_0.JPG", 11319, 9), ("sofa_final/111265328556_1.JPG", 11319, 9),
                       ("mug_final/121350478838_0.JPG", 22634, 8)]}
    n = 0
    for name, rows in splits.items():
        lines = ["image_id class_id super_class_id path"]
        for path, label, super_label in rows:
            n += 1
            write_image(base / path, seed=n)
            lines.append(f"{n} {label} {super_label} {path}")
        write_lines(base / f"Ebay_{name}.txt", lines)
    return {name: [(path, label) for path, label, _ in rows] for name, rows in splits.items()}


def write_revisited(root: Path, name: str, database: int = 5, queries=(0, 3), extension: str = "") -> dict:
    """``gnd_<name>.pkl`` (imlist, qimlist, gnd with bbx/easy/hard/junk) and ``jpg/``, as revisitop ships it
    (names without extension; ``extension=".jpg"`` writes names that carry it).

    Queries are database images (as in ROxford5k), so ``queries`` are database indices.
    """
    imlist = [f"{name[1:-2]}_{i:06d}{extension}" for i in range(database)]
    for i, image in enumerate(imlist):
        write_image(root / "jpg" / (image if extension else f"{image}.jpg"), seed=i)
    gnd = [{"bbx": np.array([3.0 + q, 2.0, 21.0 + q, 17.0]),  # 18 x 15 pixels
            "easy": np.array([1, 2], dtype=np.int64),
            "hard": np.array([4], dtype=np.int64), "junk": np.array([], dtype=np.int64)} for q in queries]
    data = {"imlist": imlist, "qimlist": [imlist[q] for q in queries], "gnd": gnd}
    (root / f"gnd_{name}.pkl").write_bytes(pickle.dumps(data))
    return data


def write_inshop(root: Path, list_dir: str = "Eval", image_parent: str = "") -> list[tuple[str, str, str]]:
    """``<list_dir>/list_eval_partition.txt`` (count, header, rows) and ``<image_parent>/img/``; rows are
    (image, item, status). The release's own folders are ``Eval`` and ``Img``."""
    rows = [
        ("img/WOMEN/Dresses/id_00000002/02_1_front.jpg", "id_00000002", "train"),
        ("img/WOMEN/Dresses/id_00000002/02_2_side.jpg", "id_00000002", "train"),
        ("img/MEN/Denim/id_00000007/01_1_front.jpg", "id_00000007", "train"),
        ("img/WOMEN/Skirts/id_00000080/01_1_front.jpg", "id_00000080", "query"),
        ("img/WOMEN/Skirts/id_00000080/01_2_side.jpg", "id_00000080", "gallery"),
        ("img/MEN/Shirts/id_00000011/01_1_front.jpg", "id_00000011", "gallery"),
        ("img/MEN/Shirts/id_00000011/02_3_back.jpg", "id_00000011", "query"),
        ("img/MEN/Shirts/id_00000011/02_4_full.jpg", "id_00000011", "gallery"),
    ]
    for n, (image, _, _) in enumerate(rows):
        write_image(root / image_parent / image, seed=n)
    write_lines(root / list_dir / "list_eval_partition.txt",
                [str(len(rows)), "image_name item_id evaluation_status"]
                + [f"{image:<60}{item:<16}{status}" for image, item, status in rows])
    return rows


VEHICLEID_LISTS = {
    "train": [("0000001", 1), ("0000002", 1), ("0000003", 4)],
    "test_800": [("0000010", 7), ("0000011", 7), ("0000012", 9)],
    "test_1600": [("0000010", 7), ("0000011", 7), ("0000012", 9), ("0000013", 12), ("0000014", 12)],
    "test_2400": [("0000010", 7), ("0000011", 7), ("0000012", 9), ("0000013", 12), ("0000015", 20)],
}


def write_vehicleid(root: Path, padded_ids: bool = True) -> dict[str, list[tuple[str, int]]]:
    """``train_test_split/{train_list,test_list_800,...}.txt`` and ``image/<image_id>.jpg`` (seven digits);
    ``padded_ids=False`` lists the ids without their leading zeros, as integers."""
    for name, rows in VEHICLEID_LISTS.items():
        filename = "train_list.txt" if name == "train" else f"test_list_{name.split('_')[1]}.txt"
        write_lines(root / "train_test_split" / filename,
                    [f"{image if padded_ids else int(image)} {vehicle:04d}" for image, vehicle in rows])
        for image, _ in rows:
            write_image(root / "image" / f"{image}.jpg", seed=int(image))
    return VEHICLEID_LISTS


def write_inaturalist(root: Path, split_folder: str = "Inat_dataset_splits") -> dict[str, list[str]]:
    """``train_val2018/<supercategory>/<category_id>/`` images and the two Smooth-AP split files in
    ``root/split_folder`` (where the authors' loader reads them; ``""`` for the root itself)."""
    splits = {
        "train": ["train_val2018/Plantae/7477/3b60c9486db1d2ee875f11a669fbde4b.jpg",
                  "train_val2018/Plantae/7477/0f4c1e2a9d2a4c1b9f6e4a3c2b1a0e9d.jpg",
                  "train_val2018/Aves/3001/a1b2c3d4e5f60718293a4b5c6d7e8f90.jpg"],
        "test": ["train_val2018/Insecta/1200/00112233445566778899aabbccddeeff.jpg",
                 "train_val2018/Plantae/1200/ffeeddccbbaa99887766554433221100.jpg",
                 "train_val2018/Insecta/1200/0123456789abcdef0123456789abcdef.jpg"],
    }
    for name, paths in splits.items():
        write_lines(root / split_folder / f"Inaturalist_{name}_set1.txt", paths)
        for n, path in enumerate(paths):
            write_image(root / path, seed=n)
    return splits


def write_vggface2(root: Path, lists: str | None = "{split}_list.txt",
                   boxes: bool = True) -> dict[str, list[tuple[str, tuple]]]:
    """``train/`` and ``test/`` identity folders, optionally the image lists (at ``lists``, e.g. the release
    README's ``meta/{split}.txt``) and loose boxes."""
    splits = {"train": ["n000002/0001_01.jpg", "n000002/0002_01.jpg", "n000003/0001_01.jpg"],
              "test": ["n000001/0001_01.jpg", "n000001/0005_02.jpg", "n000009/0003_01.jpg"]}
    truth = {}
    for name, images in splits.items():
        rows = []
        for n, image in enumerate(images):
            write_image(root / name / image, seed=n)
            rows.append((image, (1 + n, 2, 14, 10 + n)))  # x, y, w, h
        if lists:
            write_lines(root / lists.format(split=name), images)
        if boxes:
            write_lines(root / "bb_landmark" / f"loose_bb_{name}.csv",
                        ["NAME_ID,X,Y,W,H"] + [f'"{image[:-4]}",{x},{y},{w},{h}' for image, (x, y, w, h) in rows])
        truth[name] = rows
    return truth


IJBC_HEADER = "SUBJECT_ID,FILENAME,SIGHTING_ID,FACE_X,FACE_Y,FACE_WIDTH,FACE_HEIGHT"


def write_ijbc(root: Path) -> list[tuple[int, str, str]]:
    """``protocols/ijbc_metadata.csv`` and ``images/{img,frames}/``; rows are (subject, file, media).

    Subject 1: 3 stills + 2 videos of 3 frames = 5 instances (kept); subject 2: 1 still + 2 videos
    with 2 frames each (3 instances, removed); subject 3: 5 stills (kept).
    """
    rows = [(1, f"img/{i}.jpg", f"{100 + i}") for i in range(3)]
    rows += [(1, f"frames/{v}_{f}.png", f"{200 + v}") for v in range(2) for f in range(3)]
    rows += [(2, "img/10.jpg", "110")] + [(2, f"frames/{v}_{f}.png", f"{210 + v}") for v in (5, 6) for f in range(2)]
    rows += [(3, f"img/{20 + i}.jpg", f"{120 + i}") for i in range(5)]
    lines = [IJBC_HEADER]
    for n, (subject, filename, media) in enumerate(rows):
        write_image(root / "images" / filename, seed=n)
        lines.append(f"{subject},{filename},{media},{2 + n % 3},3,15,12")
    write_lines(root / "protocols" / "ijbc_metadata.csv", lines)
    return rows


def write_landmarks_clean(root: Path, image_dir: str = "", val: bool = False) -> dict[str, list[tuple[str, str]]]:
    """``annotations/annotation_clean_train.txt`` (``relpath label``, relpath relative to the root as the authors'
    code reads it, or to ``root/image_dir``), optionally ``annotation_clean_val.txt``; rows per split."""
    splits = {"train": [("jpg/0a1b2c3d4e5f6a7b.jpg", "0"), ("jpg/1a1b2c3d4e5f6a7b.jpg", "0"),
                        ("jpg/2a1b2c3d4e5f6a7b.jpg", "585"), ("jpg/3a1b2c3d4e5f6a7b.jpg", "9")]}
    if val:
        splits["val"] = [("jpg/4a1b2c3d4e5f6a7b.jpg", "585"), ("jpg/5a1b2c3d4e5f6a7b.jpg", "12")]
    for name, rows in splits.items():
        for n, (path, _) in enumerate(rows):
            write_image(root / image_dir / path, seed=n)
        write_lines(root / "annotations" / f"annotation_clean_{name}.txt", [f"{p} {label}" for p, label in rows])
    return splits
