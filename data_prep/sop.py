"""Prepare Stanford Online Products (Song et al. 2016) from the authors' FTP server.

Result: ROOT/Stanford_Online_Products/{Ebay_train.txt, Ebay_test.txt, bicycle_final/, ...}.
"""
import sys

from common import Resource, main

RESOURCES = [Resource("Stanford_Online_Products.zip", "ftp://cs.stanford.edu/cs/cvgl/Stanford_Online_Products.zip")]
EXPECTED = ["Stanford_Online_Products/Ebay_train.txt", "Stanford_Online_Products/Ebay_test.txt"]

if __name__ == "__main__":
    sys.exit(main("sop", RESOURCES, EXPECTED))
