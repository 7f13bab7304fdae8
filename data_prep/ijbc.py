"""Prepare IJB-C (Maze et al. 2018): licensed by NIST, then unpacked here.

Result: ROOT/images/{img,frames}/... and ROOT/protocols/ijbc_metadata.csv (the metadata table
the parser reads; see retrieval/data/datasets/ijbc.py for its columns).
"""
import sys

from common import main

EXPECTED = ["images", "protocols/ijbc_metadata.csv"]
MANUAL = """
IJB-C (IARPA Janus Benchmark-C) is distributed by NIST under a license:
  1. Request it from NIST's face challenges page, https://www.nist.gov/programs-projects/face-challenges;
     you receive a download link.
  2. Unpack the release yourself, or let this script unpack it safely:
         python data_prep/ijbc.py --root {root} --archive PATH/TO/ARCHIVE
     The root is the folder that holds images/ and protocols/ (if the release unpacks into a
     subfolder such as IJB-C/, that subfolder is the root). If the metadata table has another
     name or place, pass it to the dataset as metadata=PATH.
"""

if __name__ == "__main__":
    sys.exit(main("ijbc", [], EXPECTED, MANUAL))
