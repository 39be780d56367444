"""Where to train next in a phase sweep: the boundary-seeking Optuna sampler and the others.

One Optuna trial is one point of the search space (:mod:`ntk_dist.study.search`),
trained with every seed of the spec. The driver suggests ``width`` (categorical over the
spec's widths), ``depth`` (categorical, only in a sweep over several depths) and
``eta_lambda0`` (float in [eta_low, eta_high]), runs the seeds, stores
``trial.user_attrs["phases"]`` (one label of :data:`ntk_dist.analysis.phases.PHASES` per
seed) and ``trial.user_attrs["sharpness_catapult"]`` (one flag per seed), and tells the
mean phase code.

:class:`BoundarySampler` spends the runs where a located boundary lies. A seed's
outcome, as the sampler sees it, is the set of boundaries it lies above
(:func:`outcome`: c_loss, c_sharp, c_max of :mod:`ntk_dist.analysis.boundaries`), so
every boundary of every group is bisected and a change that is no located boundary
(lazy to sharpness reduction) costs no trials. Per group (a width, or a (width, depth)
pair), on a log scale in eta * lambda0:

1. a coarse grid of ``n_initial`` geometrically spaced points over [eta_low, eta_high]
   (all groups interleaved, endpoints first, then by successive halving, so a round of
   parallel trials covers the range);
2. then bisection (geometric midpoint) of brackets: adjacent observed points whose label
   sets differ (a point whose seeds disagree has a mixed label set: it lies inside the
   transition region, and the brackets on either side refine that region's edges).
   Points still running split a bracket into sub-intervals that are each assumed equally
   likely to hold the change, so a sub-interval's score is its log-width / (number of
   sub-intervals of its bracket); the highest score is bisected first. This is what
   spreads a round: a pending midpoint halves its bracket's score and the next trial of
   the round goes elsewhere (or to a quarter point);
3. once every bracket is narrower than ``resolution`` (relative: b / a - 1), the
   brackets are refined further down to resolution / 64, and after that the widest
   interval of a single phase is bisected (exploration for phase islands).

The proposal is a pure function of (COMPLETE trials' params and phases, params of
trials that are RUNNING, WAITING or FAIL, the sampler's settings): no random state, so
an interrupted sweep that re-creates its crashed round with the same params proposes
exactly the same later points (sweep resume). Cost per proposal O(T log T) for T
trials in the study.

Search specs are those of :mod:`ntk_dist.study.search`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from ntk_dist.analysis.boundaries import BOUNDARIES, sides_of
from ntk_dist.analysis.phases import read_label
from ntk_dist.core import validate
from ntk_dist.study.search import (
    DEPTH_PARAM,
    ETA_PARAM,
    SAMPLERS,
    WIDTH_PARAM,
    eta_range,
    grid_points,
    group_params,
    params_group,
    search_field,
    search_groups,
)

DEFAULT_N_INITIAL = 9
_REFINE_FACTOR = 64.0  # brackets are refined past the target down to resolution / 64
_MIN_LOG_GAP = 1e-9


class BoundarySampler(optuna.samplers.BaseSampler):
    """Proposes (group, eta * lambda0) points near phase changes (module docstring).

    A group is a width, or a (width, depth) pair when ``depths`` is given (a sweep over
    several depths, whose trials also suggest the ``depth`` param).

    Args:
      widths: the sweep's widths (positive ints, the ``width`` param's choices).
      depths: the sweep's depths (the ``depth`` param's choices), or None.
      eta_low, eta_high: range of eta * lambda0, 0 < eta_low < eta_high.
      resolution: target relative width of a bracket (b / a - 1), > 0; 0.01 locates a
        boundary to within 1% of its eta * lambda0.
      n_initial: coarse grid points per width (>= 2).
    """

    def __init__(
        self,
        *,
        widths: Sequence[int],
        eta_low: float,
        eta_high: float,
        resolution: float = 0.01,
        n_initial: int = DEFAULT_N_INITIAL,
        depths: Sequence[int] | None = None,
    ):
        self.widths = validate.positive_ints(widths, "widths")
        self.depths = None if depths is None else validate.positive_ints(depths, "depths")
        self.groups = search_groups({"widths": self.widths, "depths": self.depths})
        self.eta_low, self.eta_high = eta_range(eta_low, eta_high)
        self.resolution = validate.positive_float(resolution, "resolution")
        self.n_initial = validate.positive_int(n_initial, "n_initial")
        if self.n_initial < 2:
            raise ValueError(f"n_initial must be >= 2, got {n_initial}")
        grid = np.geomspace(self.eta_low, self.eta_high, self.n_initial)
        self._coarse = [float(grid[i]) for i in _spread_order(self.n_initial)]

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        self._check_distribution(param_name, param_distribution)
        observed, pending = history(study, exclude=trial.number)
        known = {k: trial.params[k] for k in (WIDTH_PARAM, DEPTH_PARAM) if k in trial.params}
        group, eta = self.propose(observed, pending, **known)
        if param_name == ETA_PARAM:
            return eta
        value = group_params(group)[param_name]
        return next(c for c in param_distribution.choices if c == value)

    def propose(
        self,
        observed: Sequence[tuple[object, float, Sequence[str]]],
        pending: Sequence[tuple[object, float]],
        *,
        width: int | None = None,
        depth: int | None = None,
    ) -> tuple[object, float]:
        """The next point, a pure function of the history.

        Args:
          observed: (group, eta_lambda0, outcome labels of its seeds) per finished trial.
          pending: (group, eta_lambda0) of trials running or otherwise taken.
          width, depth: restrict the proposal to groups of this width / depth (already
            chosen for the trial).

        Returns:
          (group, eta_lambda0); a group is a width, or (width, depth) with ``depths``.
        """
        widths = [
            g
            for g in self.groups
            if (width is None or group_params(g)[WIDTH_PARAM] == int(width))
            and (depth is None or group_params(g).get(DEPTH_PARAM) == int(depth))
        ]
        labels: dict[object, dict[float, set[str]]] = {w: {} for w in widths}
        taken: dict[object, set[float]] = {w: set() for w in widths}
        for w, eta, phases in observed:
            if w in labels:
                labels[w].setdefault(float(eta), set()).update(phases)
                taken[w].add(float(eta))
        for w, eta in pending:
            if w in taken:
                taken[w].add(float(eta))
        for eta in self._coarse:
            for w in widths:
                if not any(math.isclose(eta, t, rel_tol=1e-12) for t in taken[w]):
                    return w, eta
        best = min(
            (key, w, x, y)
            for w in widths
            for key, x, y in self._intervals(labels[w], taken[w], self.groups.index(w))
        )
        _, w, x, y = best
        return w, math.sqrt(x * y)

    def _intervals(self, labels, taken, order):
        target = math.log1p(self.resolution)
        points = sorted(taken)
        seen = sorted(labels)
        for x, y in zip(points, points[1:], strict=False):
            gap = math.log(y / x)
            if gap <= _MIN_LOG_GAP:
                continue
            i = np.searchsorted(seen, x, side="right")
            bracket = 0 < i < len(seen) and labels[seen[i - 1]] != labels[seen[i]]
            if bracket:
                a, b = seen[i - 1], seen[i]
                parts = sum(1 for p in points if a <= p <= b) - 1
                score = gap / parts
                if gap > target:
                    yield (1, -score, order, x), x, y
                    continue
                if gap > target / _REFINE_FACTOR:
                    yield (2, -score, order, x), x, y
                    continue
            yield (3, -gap, order, x), x, y

    def _check_distribution(self, name, dist):
        if name == DEPTH_PARAM and self.depths is not None:
            _require_categorical(name, dist, self.depths, "depths")
        elif name == WIDTH_PARAM:
            _require_categorical(name, dist, self.widths, "widths")
        elif name == ETA_PARAM:
            ok = isinstance(dist, FloatDistribution) and (
                math.isclose(dist.low, self.eta_low) and math.isclose(dist.high, self.eta_high)
            )
            if not ok:
                raise ValueError(
                    f"param {ETA_PARAM!r} must be suggested as a float in "
                    f"[{self.eta_low}, {self.eta_high}] (the sampler's range), got {dist!r}"
                )
        else:
            raise ValueError(
                f"BoundarySampler samples only {WIDTH_PARAM!r} and {ETA_PARAM!r}, got param "
                f"{name!r}; fix the value of other params in the spec"
            )


def history(study: optuna.Study, *, exclude: int | None = None):
    """A study's trials as the sampler sees them.

    Args:
      study: the sweep's study.
      exclude: trial number to leave out (the trial being sampled).

    Returns:
      (observed, pending): ``observed`` lists (group, eta_lambda0, outcomes) of COMPLETE
      trials with a ``"phases"`` user attribute (one :func:`outcome` per seed; labels of
      older sweeps read as :func:`ntk_dist.analysis.phases.read_label` does, and a trial
      without ``"sharpness_catapult"`` counts as having none); ``pending`` lists
      (group, eta_lambda0) of every other trial whose params are known (RUNNING,
      WAITING with enqueued params, FAIL, or COMPLETE without phases): those points
      count as taken.
    """
    observed, pending = [], []
    for t in study.get_trials(deepcopy=False):
        if t.number == exclude:
            continue
        params = t.params or t.system_attrs.get("fixed_params") or {}
        if WIDTH_PARAM not in params or ETA_PARAM not in params:
            continue
        point = (params_group(params), float(params[ETA_PARAM]))
        phases = t.user_attrs.get("phases")
        if t.state == TrialState.COMPLETE and phases:
            try:
                phases = [read_label(p) for p in phases]
            except ValueError as err:
                raise ValueError(f"trial {t.number}: user_attrs['phases']: {err}") from None
            sharp = t.user_attrs.get("sharpness_catapult") or [False] * len(phases)
            observed.append((*point, outcome(phases, sharp)))
        else:
            pending.append(point)
    return observed, pending


def outcome(phases, sharpness_catapult) -> tuple[str, ...]:
    """Per seed, the boundaries it lies above, joined by "+" ("" below all of them)."""
    sides = sides_of(phases, sharpness_catapult)
    return tuple("+".join(b for b in BOUNDARIES if sides[b][i]) for i in range(len(sides["c_max"])))


def _require_categorical(name: str, dist, choices, what: str) -> None:
    """``dist`` must be a categorical over exactly ``choices`` (the sampler's ``what``)."""
    if not isinstance(dist, CategoricalDistribution) or sorted(dist.choices) != sorted(choices):
        raise ValueError(
            f"param {name!r} must be suggested as a categorical over the sampler's {what} "
            f"{list(choices)}, got {dist!r}"
        )


class GridPointSampler(optuna.samplers.BaseSampler):
    """For ``sampler: grid``: the first point of :func:`ntk_dist.study.search.grid_points`
    that no other trial has taken (observed or pending, as :func:`history` sees them).

    A pure function of the study, like :class:`BoundarySampler`: nothing is enqueued up
    front, so a driver killed at any moment resumes to the same points (a trial killed
    before both params were set has taken nothing and its point is asked again).

    Args:
      points: the grid, as ``grid_points`` returns it.
    """

    def __init__(self, points: Sequence[dict]):
        self.points = [(params_group(p), float(p[ETA_PARAM])) for p in points]

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        observed, pending = history(study, exclude=trial.number)
        taken = {(g, eta) for g, eta, _ in observed} | set(pending)
        for g, eta in self.points:
            point = {**group_params(g), ETA_PARAM: eta}
            if (g, eta) not in taken and all(point[k] == v for k, v in trial.params.items()):
                return point[param_name]
        raise ValueError(
            f"sampler 'grid': every one of the {len(self.points)} grid points is taken, but "
            f"trial {trial.number} asked for {param_name!r}; set n_trials to at most "
            "len(grid_points(spec))"
        )


class SlotSeededSampler(optuna.samplers.BaseSampler):
    """A seeded Optuna sampler rebuilt for each trial with a seed of (seed, slot).

    Optuna's TPE, random and QMC samplers draw from one RNG seeded at construction, so a
    study reloaded after a crash would restart the stream and ask other points. Here the
    slot of a trial is the number of earlier trials that did not FAIL: a trial a crash
    lost is FAIL, and the trial that takes its place gets its slot, so a resumed sweep
    asks the same points as an uninterrupted one (given the same finished trials).

    Args:
      build: ``build(seed) -> sampler``.
      seed: the spec's ``search.seed``.
    """

    def __init__(self, build, seed: int):
        self._build, self._seed = build, int(seed)
        self._inner = build(self._seed)

    def before_trial(self, study, trial):
        slot = sum(
            1
            for t in study.get_trials(deepcopy=False)
            if t.number < trial.number and t.state != TrialState.FAIL
        )
        seed = int(np.random.SeedSequence([self._seed, slot]).generate_state(1)[0])
        self._inner = self._build(seed)
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values):
        self._inner.after_trial(study, trial, state, values)


def make_sampler(search_spec) -> optuna.samplers.BaseSampler:
    """The Optuna sampler named by ``search_spec.sampler``.

    ``"boundary"``: :class:`BoundarySampler`; ``"tpe"``, ``"random"``: Optuna's TPESampler
    and RandomSampler, seeded per trial from ``seed`` (:class:`SlotSeededSampler`, so
    they resume); ``"qmc"``: QMCSampler (scrambled Sobol, whose sample index Optuna keeps
    in the study); ``"grid"``: :class:`GridPointSampler` over
    :func:`ntk_dist.study.search.grid_points` (Optuna's GridSampler raises on exhaustion
    under ask/tell, optuna#5141).
    """
    name = validate.choice(search_field(search_spec, "sampler"), "search.sampler", SAMPLERS)
    seed = search_field(search_spec, "seed", 0)
    if name == "boundary":
        return BoundarySampler(
            widths=search_field(search_spec, "widths"),
            eta_low=search_field(search_spec, "eta_low"),
            eta_high=search_field(search_spec, "eta_high"),
            resolution=search_field(search_spec, "resolution", 0.01),
            depths=search_field(search_spec, "depths", None),
        )
    if name == "tpe":
        return SlotSeededSampler(lambda s: optuna.samplers.TPESampler(seed=s), seed)
    if name == "random":
        return SlotSeededSampler(lambda s: optuna.samplers.RandomSampler(seed=s), seed)
    if name == "qmc":
        with warnings.catch_warnings():  # "experimental" since optuna 3.0; the API is stable
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(
                seed=seed, scramble=True, warn_independent_sampling=False
            )
    return GridPointSampler(grid_points(search_spec))


def _spread_order(n: int) -> list[int]:
    """Indices 0..n-1: both ends, then midpoints level by level (breadth-first halving)."""
    order, queue = [0, n - 1], [(0, n - 1)]
    while queue:
        lo, hi = queue.pop(0)
        mid = (lo + hi) // 2
        if lo < mid < hi:
            order.append(mid)
            queue += [(lo, mid), (mid, hi)]
    return order
