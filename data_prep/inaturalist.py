"""Prepare iNaturalist 2018 (Van Horn et al. 2018) with the Smooth-AP class-disjoint split.

Images: train_val2018.tar.gz from the competition's bucket (md5 as published for the 2018
release). Split: Inaturalist_train_set1.txt and Inaturalist_test_set1.txt from the Smooth-AP
authors, who distribute them as a zip to unpack into the dataset root; their loader
(Andrew-Brown1/Smooth_AP, src/datasets.py) reads them from ROOT/Inat_dataset_splits/.
Result: ROOT/train_val2018/<supercategory>/<category_id>/*.jpg and the two split files in
ROOT/Inat_dataset_splits/ (the parser also accepts them in ROOT itself).
"""
import sys

from common import Resource, main

SPLIT_FOLDER = "Inat_dataset_splits"
SPLIT_FILES = ("Inaturalist_train_set1.txt", "Inaturalist_test_set1.txt")
RESOURCES = [
    Resource("train_val2018.tar.gz", "https://ml-inat-competition-datasets.s3.amazonaws.com/2018/train_val2018.tar.gz",
             checksum="md5:b1c6952ce38f31868cc50ea72d066cc3"),
    *(Resource(name, into=SPLIT_FOLDER) for name in SPLIT_FILES),
]
EXPECTED = ["train_val2018", *((f"{SPLIT_FOLDER}/{name}", name) for name in SPLIT_FILES)]
MANUAL = """
The class-disjoint split files are released by the Smooth-AP authors (Brown et al., ECCV 2020) as a
zip linked from the README of https://github.com/Andrew-Brown1/Smooth_AP
(https://drive.google.com/file/d/1sXfkBTFDrRU3__-NUs1qBP3sf_0uMB98/view). Either
  - unpack that zip into the root, safely, with
        python data_prep/inaturalist.py --root {root} --archive PATH/TO/THE/ZIP
  - or put Inaturalist_train_set1.txt and Inaturalist_test_set1.txt into
        {downloads}
    and run this script again; it copies them into {root}/Inat_dataset_splits/.
"""

if __name__ == "__main__":
    sys.exit(main("inaturalist", RESOURCES, EXPECTED, MANUAL))
