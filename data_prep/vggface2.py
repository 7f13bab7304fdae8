"""Prepare VGGFace2 (Cao et al. 2018): registration, then local archives.

Result: ROOT/train/n000002/0001_01.jpg ..., ROOT/test/..., and when given the official lists
(train_list.txt, test_list.txt; the parser also reads meta/train.txt, meta/test.txt as the release
README places them) and loose face boxes (bb_landmark/loose_bb_{train,test}.csv).
"""
import sys

from common import Resource, main

RESOURCES = [Resource(name) for name in ("vggface2_train.tar.gz", "vggface2_test.tar.gz", "bb_landmark.tar.gz",
                                         "train_list.txt", "test_list.txt")]
EXPECTED = ["train", "test"]
MANUAL = """
VGGFace2 is distributed after registration:
  1. Register at https://www.robots.ox.ac.uk/~vgg/data/vgg_face2/ (the page names the current
     download location).
  2. Download into {downloads}
       vggface2_train.tar.gz, vggface2_test.tar.gz        (the images; both are needed)
       bb_landmark.tar.gz, train_list.txt, test_list.txt  (optional: loose face boxes, official lists)
  3. Run this script again; it extracts and copies them into {root}.
  Only evaluating on the test identities? Put only the test files there; the script reports
  train/ as missing, and the dataset loads with splits=["test"].
"""

if __name__ == "__main__":
    sys.exit(main("vggface2", RESOURCES, EXPECTED, MANUAL))
