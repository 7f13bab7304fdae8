"""Prepare the R1M distractors (Radenovic et al. 2018): 100 image archives and the image list.

Result: DIR/revisitop1m.txt and DIR/jpg/...; pass DIR as distractors_root= to roxford5k or rparis6k.
"""
import sys

from common import Resource, main

BASE = "http://ptak.felk.cvut.cz/revisitop/revisitop1m/"
RESOURCES = [Resource("revisitop1m.txt", BASE + "revisitop1m.txt")] + [
    Resource(f"revisitop1m.{i}.tar.gz", f"{BASE}jpg/revisitop1m.{i}.tar.gz", into="jpg") for i in range(1, 101)
]
EXPECTED = ["revisitop1m.txt", "jpg"]

if __name__ == "__main__":
    sys.exit(main("revisitop1m", RESOURCES, EXPECTED))
