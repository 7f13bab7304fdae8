"""Checking each component's arguments against the signature of what it names."""
from __future__ import annotations

import inspect

from retrieval.config.loader import ConfigError
from retrieval.config.validate import check_arguments


def _check(registry, component, key, where, injected=()):
    try:
        factory = registry.get(component.name)
    except KeyError as error:
        raise ConfigError(f"{where(key + '.name')}: {error.args[0]}") from None
    component.args = check_arguments(factory, component.args, key + ".args", where, injected)
    return factory


def _try_building(factory, component, key, where, supplied: dict, injected=()) -> None:
    """Build a cheap component (a loss, a head) once, so that a value its constructor refuses (a temperature
    <= 0, ``simplified`` without ``tie_aware``, a cgd ``dim`` that does not split over its descriptors) is a
    config error naming the key, not a traceback after config.yaml is written.

    ``supplied``: stand-ins for engine-supplied sizes (a head's ``in_channels``) that the component's checks of
    its own arguments do not depend on. A component needing another engine-supplied argument (``injected``,
    e.g. a proxy loss's ``num_classes``) is left to its declared constraints.
    """
    parameters = inspect.signature(factory).parameters
    if (set(parameters) & set(injected)) - set(supplied):
        return
    try:
        factory(**{name: value for name, value in supplied.items() if name in parameters}, **component.args)
    except (ValueError, TypeError) as error:
        mentioned = {str(error).find(name): name for name in component.args if name in str(error)}
        named = mentioned[min(mentioned)] if mentioned else None  # the argument the message starts from
        raise ConfigError(f"{where(f'{key}.args.{named}' if named else key + '.args')}: {error}") from None


def check_components(cfg, where) -> None:
    """Resolve every named component in ``cfg`` and validate its arguments in place."""
    import retrieval.data.datasets  # noqa: F401  (registers the datasets)
    from retrieval.data.split import DATASETS
    from retrieval.evaluation import PROTOCOLS
    from retrieval.losses import LOSSES
    from retrieval.models import BACKBONES, HEADS, WHITENINGS

    _check(DATASETS, cfg.data.dataset, "data.dataset", where, ("root",))
    _check(BACKBONES, cfg.model.backbone, "model.backbone", where)
    head = _check(HEADS, cfg.model.head, "model.head", where, ("in_channels", "num_classes"))
    _try_building(head, cfg.model.head, "model.head", where, {"in_channels": 1, "num_classes": 1})
    if cfg.model.whitening is not None:
        _check(WHITENINGS, cfg.model.whitening, "model.whitening", where, ("features", "labels"))
    for name, term in cfg.losses.items():
        injected = ("num_classes", "embedding_dim")
        loss = _check(LOSSES, term, f"losses.{name}", where, injected)
        _try_building(loss, term, f"losses.{name}", where, {}, injected)
    for name, target in cfg.eval.targets.items():
        if target.dataset is not None:
            _check(DATASETS, target.dataset, f"eval.targets.{name}.dataset", where, ("root",))
        _check(PROTOCOLS, target.protocol, f"eval.targets.{name}.protocol", where, ("features", "split"))
    if not any(cfg.eval.targets):
        raise ConfigError(f"{where('eval.targets')}: at least one evaluation target is needed")
