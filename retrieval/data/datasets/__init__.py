"""Every dataset module registers itself in ``retrieval.data.split.DATASETS`` on import."""
from retrieval.data import bundled  # noqa: F401
from retrieval.data.datasets import (  # noqa: F401
    cars196,
    cub200,
    ijbc,
    inaturalist,
    inshop,
    landmarks_clean,
    revisited,
    sop,
    vehicleid,
    vggface2,
)
