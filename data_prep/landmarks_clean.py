"""Prepare Landmarks-clean (Gordo et al. 2017), the training set of Listwise AP: no archive exists.

Result: ROOT/annotations/annotation_clean_train.txt (lines "relpath label") and ROOT/images/<relpath>.
"""
import sys

from common import main

EXPECTED = ["annotations/annotation_clean_train.txt", "images"]
MANUAL = """
Landmarks-clean has no single download: its images are those of the Landmarks dataset
(Babenko et al., "Neural codes for image retrieval", ECCV 2014, distributed as a list of image
addresses) that the clean list of Gordo et al. (2017) keeps.
  1. Get the clean list from the Deep Image Retrieval authors (its location is given in the README
     of https://github.com/naver/deep-image-retrieval) and save it as
     {root}/annotations/annotation_clean_train.txt
  2. Download the images it names into {root}/images/, each at its relpath from the list.
  3. Run this script again, then the verification command it prints; images that could not be
     downloaded any more are listed by the verification, never dropped silently.
"""

if __name__ == "__main__":
    sys.exit(main("landmarks_clean", [], EXPECTED, MANUAL))
