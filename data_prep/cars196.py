"""Prepare Stanford CARS196: car_ims.tgz and cars_annos.mat from the authors' page (Krause et al. 2013).

Result: ROOT/cars_annos.mat and ROOT/car_ims/000001.jpg ... (16,185 images). A root already in the
devkit layout (cars_train/, cars_test/, devkit/cars_train_annos.mat, devkit/cars_meta.mat and
cars_test_annos_withlabels.mat) is accepted as it is.
"""
import sys

from common import Resource, main

BASE = "http://ai.stanford.edu/~jkrause/car196/"
RESOURCES = [Resource("car_ims.tgz", BASE + "car_ims.tgz"), Resource("cars_annos.mat", BASE + "cars_annos.mat")]
EXPECTED = [("cars_annos.mat", "devkit/cars_train_annos.mat"), ("car_ims", "cars_test")]
MANUAL = """
The authors' address ({url}) has been offline at times. If the download fails, take car_ims.tgz
and cars_annos.mat from any copy of the original release, put both files into {downloads},
and run again with --no-download.
""".replace("{url}", BASE)

if __name__ == "__main__":
    sys.exit(main("cars196", RESOURCES, EXPECTED, MANUAL))
