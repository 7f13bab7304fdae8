"""``python -m retrieval.tables ARGS`` is ``python -m retrieval table ARGS``, also when ARGS start with an option."""
import sys

from retrieval.cli import main

sys.exit(main(["table", "--", *sys.argv[1:]]))
