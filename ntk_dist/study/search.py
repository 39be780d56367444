"""The search space of a phase sweep: its two params, the sampler names and the grid.

One Optuna trial is one point (``width``, ``eta_lambda0``) of a sweep, trained with every
seed of the spec: ``width`` is categorical over the spec's widths and ``eta_lambda0`` a
float in [eta_low, eta_high]. A sweep over several depths (``model.depth`` a list) adds
a third param, ``depth``, categorical over them: a point is then (width, depth,
eta * lambda0) and a group is (width, depth). The samplers that choose the points are in
:mod:`ntk_dist.study.samplers`; this module imports no Optuna, so a spec is checked
without it.

Search specs: any object with attributes, or a mapping, with the fields ``widths``,
``eta_low``, ``eta_high``, ``sampler``, ``n_trials``, ``parallel``, ``resolution``,
``seed`` (the sweep spec's ``search`` section), and optionally ``depths`` (None or
absent: no depth param).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ntk_dist.core import validate

WIDTH_PARAM = "width"
DEPTH_PARAM = "depth"
ETA_PARAM = "eta_lambda0"
SAMPLERS = ("boundary", "tpe", "random", "qmc", "grid")


def grid_points(search_spec) -> list[dict]:
    """The explicit grid for ``sampler: grid``, to be enqueued by the driver.

    Per group (width, or (width, depth) with ``depths``), k = max(2, n_trials // groups)
    geometrically spaced values of eta * lambda0 over [eta_low, eta_high]; ordered
    eta-major so that consecutive trials cover all groups.

    Returns:
      list of ``{"width": int, "eta_lambda0": float}`` (plus ``"depth": int`` with
      ``depths``), at most max(n_trials, 2 * groups).
    """
    groups = search_groups(search_spec)
    low, high = eta_range(
        search_field(search_spec, "eta_low"), search_field(search_spec, "eta_high")
    )
    n_trials = validate.positive_int(search_field(search_spec, "n_trials"), "search.n_trials")
    k = max(2, n_trials // len(groups))
    return [
        {**group_params(g), ETA_PARAM: float(eta)}
        for eta in np.geomspace(low, high, k)
        for g in groups
    ]


def search_groups(search_spec) -> list:
    """The groups of a search spec: its widths, or (width, depth) pairs, depth-major,
    when it has ``depths``."""
    widths = validate.positive_ints(search_field(search_spec, "widths"), "search.widths")
    depths = search_field(search_spec, "depths", None)
    if depths is None:
        return list(widths)
    depths = validate.positive_ints(depths, "model.depth")
    return [(w, d) for d in depths for w in widths]


def group_params(group) -> dict:
    """The trial params of a group: ``{"width": w}`` or ``{"width": w, "depth": d}``."""
    if isinstance(group, tuple):
        return {WIDTH_PARAM: int(group[0]), DEPTH_PARAM: int(group[1])}
    return {WIDTH_PARAM: int(group)}


def params_group(params: dict):
    """The group of a trial's params (inverse of :func:`group_params`)."""
    if DEPTH_PARAM in params:
        return (int(params[WIDTH_PARAM]), int(params[DEPTH_PARAM]))
    return int(params[WIDTH_PARAM])


_MISSING = object()


def search_field(spec, name, default=_MISSING):
    """Field ``name`` of a search spec (mapping or object); ValueError naming it if absent."""
    value = spec.get(name, default) if isinstance(spec, Mapping) else getattr(spec, name, default)
    if value is _MISSING:
        raise ValueError(f"search spec is missing the field {name!r}; add search.{name}")
    return value


def eta_range(low, high) -> tuple[float, float]:
    """The validated range (eta_low, eta_high) of eta * lambda0, 0 < low < high."""
    low = validate.positive_float(low, "search.eta_low")
    high = validate.positive_float(high, "search.eta_high")
    if not high > low:
        raise ValueError(f"search.eta_high must be > eta_low, got eta_low={low}, eta_high={high}")
    return low, high
