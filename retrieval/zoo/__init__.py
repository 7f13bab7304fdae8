"""Released networks of the landmark-retrieval model zoos, loaded safely into our models and evaluated
against their published numbers (``python -m retrieval zoo list|evaluate``)."""
from retrieval.zoo.loaders import LoadedNet, ZooFormatError, load_cirtorch, load_dirtorch, read_checkpoint
from retrieval.zoo.registry import ZOO, ZooEntry, entry

__all__ = ["LoadedNet", "ZOO", "ZooEntry", "ZooFormatError", "entry", "load_cirtorch", "load_dirtorch",
           "read_checkpoint"]
