"""Prepare Landmarks-clean (Gordo et al. 2017), the training set of Listwise AP: no archive exists.

Result, as the listwise AP authors' code reads it (naver/deep-image-retrieval,
dirtorch/datasets/landmarks.py: $DB_ROOT/landmarks/): ROOT/annotations/annotation_clean_train.txt
(lines "relpath label"; optional annotation_clean_val.txt) and each image at ROOT/<relpath>
(ROOT/images/<relpath> is accepted too).
"""
import sys

from common import main

EXPECTED = ["annotations/annotation_clean_train.txt"]
MANUAL = """
Landmarks-clean has no single download: its images are those of the Landmarks dataset
(Babenko et al., "Neural codes for image retrieval", ECCV 2014, distributed as a list of image
addresses) that the clean list of Gordo et al. (2017) keeps.
  1. Get the clean lists from the Deep Image Retrieval authors (their location is given in the README
     of https://github.com/naver/deep-image-retrieval). As released they give each image's address
     ("http://... label").
  2. Download the images into {root}, and write {root}/annotations/annotation_clean_train.txt with one
     line "relpath label" per image you obtained (relpath relative to {root}), as the authors' code reads it.
  3. Run this script again, then the verification command it prints; images that could not be
     downloaded any more are listed by the verification, never dropped silently.
"""

if __name__ == "__main__":
    sys.exit(main("landmarks_clean", [], EXPECTED, MANUAL))
