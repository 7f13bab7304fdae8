"""Prepare Revisited Paris (Radenovic et al. 2018): Paris images (two archives) and the revisited ground truth.

The archives nest images by landmark (paris/<landmark>/<name>.jpg); they are moved into one
folder. A few Paris images are corrupt in the original release; the revisited lists leave them out.
Result: ROOT/gnd_rparis6k.pkl and ROOT/jpg/<name>.jpg.
"""
import sys

from common import Resource, flatten, main

BASE = "https://www.robots.ox.ac.uk/~vgg/data/parisbuildings/"
RESOURCES = [
    Resource("paris_1-v1.tgz", BASE + "paris_1-v1.tgz", into="jpg"),
    Resource("paris_2-v1.tgz", BASE + "paris_2-v1.tgz", into="jpg"),
    Resource("gnd_rparis6k.pkl", "http://cmp.felk.cvut.cz/revisitop/data/datasets/rparis6k/gnd_rparis6k.pkl"),
]
EXPECTED = ["gnd_rparis6k.pkl", "jpg"]

if __name__ == "__main__":
    sys.exit(main("rparis6k", RESOURCES, EXPECTED, after=lambda root: flatten(root / "jpg")))
