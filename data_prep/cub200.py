"""Prepare CUB-200-2011 (Wah et al. 2011) from CaltechDATA.

Result: ROOT/CUB_200_2011/{images.txt, image_class_labels.txt, bounding_boxes.txt, images/}.
"""
import sys

from common import Resource, main

RESOURCES = [Resource("CUB_200_2011.tgz", "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
                      checksum="md5:97eceeb196236b17998738112f37df78")]
EXPECTED = ["CUB_200_2011/images.txt", "CUB_200_2011/image_class_labels.txt", "CUB_200_2011/bounding_boxes.txt",
            "CUB_200_2011/images"]

if __name__ == "__main__":
    sys.exit(main("cub200", RESOURCES, EXPECTED))
