"""Prepare PKU VehicleID (Liu et al. 2016): released on request, then unpacked here.

Result: ROOT/image/<image_id>.jpg (seven-digit ids, as the Smooth-AP authors' loader opens them)
and ROOT/train_test_split/{train_list, test_list_800, test_list_1600, test_list_2400}.txt.
"""
import sys

from common import main

EXPECTED = ["image", "train_test_split/train_list.txt", "train_test_split/test_list_800.txt",
            "train_test_split/test_list_1600.txt", "train_test_split/test_list_2400.txt"]
MANUAL = """
VehicleID is released by Peking University on request, for research use:
  1. Follow the instructions at https://www.pkuml.org/resources/pku-vehicleid.html (an agreement
     to sign and send); you receive a download link.
  2. Download the release and either unpack it yourself so that {root}/image/ and
     {root}/train_test_split/ exist, or let this script unpack it safely:
         python data_prep/vehicleid.py --root {root} --archive PATH/TO/ARCHIVE
     (if it unpacks into a subfolder such as VehicleID_V1.0/, that subfolder is the root).
"""

if __name__ == "__main__":
    sys.exit(main("vehicleid", [], EXPECTED, MANUAL))
