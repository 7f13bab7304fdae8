"""Prepare iNaturalist 2018 (Van Horn et al. 2018) with the Smooth-AP class-disjoint split.

Images: train_val2018.tar.gz from the competition's bucket (md5 as published for the 2018
release). Split: Inaturalist_train_set1.txt and Inaturalist_test_set1.txt from the Smooth-AP
authors. Result: ROOT/train_val2018/<supercategory>/<category_id>/*.jpg and the two split files.
"""
import sys

from common import Resource, main

RESOURCES = [
    Resource("train_val2018.tar.gz", "https://ml-inat-competition-datasets.s3.amazonaws.com/2018/train_val2018.tar.gz",
             checksum="md5:b1c6952ce38f31868cc50ea72d066cc3"),
    Resource("Inaturalist_train_set1.txt"),
    Resource("Inaturalist_test_set1.txt"),
]
EXPECTED = ["train_val2018", "Inaturalist_train_set1.txt", "Inaturalist_test_set1.txt"]
MANUAL = """
The class-disjoint split files are released by the Smooth-AP authors (Brown et al., ECCV 2020):
  1. Follow the iNaturalist link of the README of https://github.com/Andrew-Brown1/Smooth_AP
     and download Inaturalist_train_set1.txt and Inaturalist_test_set1.txt into
     {downloads}
  2. Run this script again; it copies them into {root}.
"""

if __name__ == "__main__":
    sys.exit(main("inaturalist", RESOURCES, EXPECTED, MANUAL))
