"""Which dotted keys two configs set differently, named with where the current config set them."""
from __future__ import annotations


def differences(current: dict, other: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config mappings (see ``config_to_dict``)."""
    keys = [*current, *(k for k in other if k not in current)]
    out = []
    for key in keys:
        a, b = current.get(key), other.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def model_mismatch(cfg, saved_config: dict | None, path, error: Exception) -> str:
    """Why the weights in ``path`` do not fit the model ``cfg`` builds: the ``model.*`` keys that differ
    from the config recorded in the file, each with where it was set and the file's value."""
    from retrieval.config import config_to_dict
    from retrieval.config.validate import Where

    where = getattr(cfg, "where", None) or Where({})
    reason = next(iter(str(error).strip().splitlines()), "")
    if not saved_config or "model" not in saved_config:
        return (f"the weights in {path} do not fit the model of this config ({reason}); evaluate it with the "
                "config it was trained with")
    mine, theirs = config_to_dict(cfg)["model"], saved_config["model"]
    keys = differences(mine, theirs, "model.")
    if not keys:
        return f"the weights in {path} do not fit the model of this config ({reason})"

    def value(tree, key):
        for part in key.split(".")[1:]:
            tree = tree.get(part) if isinstance(tree, dict) else None
        return tree

    listed = "; ".join(f"{where(k)} is {value(mine, k)!r}, the file's model has {value(theirs, k)!r}" for k in keys)
    return (f"{path} was trained with another model: {listed}. Evaluate it with the config it was trained with "
            "(the run directory's config.yaml)")
