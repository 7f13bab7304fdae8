"""Prepare Revisited Oxford (Radenovic et al. 2018): Oxford Buildings images and the revisited ground truth.

Result: ROOT/gnd_roxford5k.pkl and ROOT/jpg/<name>.jpg (all images in one folder).
"""
import sys

from common import Resource, flatten, main

RESOURCES = [
    Resource("oxbuild_images-v1.tgz", "https://www.robots.ox.ac.uk/~vgg/data/oxbuildings/oxbuild_images-v1.tgz",
             into="jpg"),
    Resource("gnd_roxford5k.pkl", "http://cmp.felk.cvut.cz/revisitop/data/datasets/roxford5k/gnd_roxford5k.pkl"),
]
EXPECTED = ["gnd_roxford5k.pkl", "jpg"]

if __name__ == "__main__":
    sys.exit(main("roxford5k", RESOURCES, EXPECTED, after=lambda root: flatten(root / "jpg")))
