"""Prepare DeepFashion In-shop Clothes Retrieval (Liu et al. 2016): registration, then local files.

Result: ROOT/list_eval_partition.txt and ROOT/img/{WOMEN,MEN}/... The parser also accepts the
release's own folders (its README: Img/img.zip, Eval/list_eval_partition.txt): ROOT/Eval/ for the
list and ROOT/Img/img/ for the images.
"""
import sys

from common import Resource, main

RESOURCES = [Resource("img.zip"), Resource("list_eval_partition.txt")]
EXPECTED = [("list_eval_partition.txt", "Eval/list_eval_partition.txt"), ("img", "Img/img")]
MANUAL = """
In-shop Clothes Retrieval is shared by the DeepFashion authors once you accept their terms:
  1. Open http://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html and follow its
     download link (the "In-shop Clothes Retrieval Benchmark" folder).
  2. From that folder download Img/img.zip and Eval/list_eval_partition.txt into
     {downloads}
  3. Run this script again; it extracts img.zip into {root}.
     If your img.zip asks for a password (the authors send it on request), unzip it yourself
     so that {root}/img/ exists; list_eval_partition.txt is then the only file needed.
"""

if __name__ == "__main__":
    sys.exit(main("inshop", RESOURCES, EXPECTED, MANUAL))
