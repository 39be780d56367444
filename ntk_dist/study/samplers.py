"""Where to train next in a phase sweep: the boundary-seeking Optuna sampler and the others.

One Optuna trial is one point of the search space (:mod:`ntk_dist.study.search`),
trained with every seed of the spec. The driver suggests ``width`` (categorical over the
spec's widths) and ``eta_lambda0`` (float in [eta_low, eta_high]), runs the seeds, stores
``trial.user_attrs["phases"]`` (one label of :data:`ntk_dist.analysis.phases.PHASES` per
seed) and tells the mean phase code.

:class:`BoundarySampler` spends the runs where the phase changes. Per width, on a log
scale in eta * lambda0:

1. a coarse grid of ``n_initial`` geometrically spaced points over [eta_low, eta_high]
   (all widths interleaved, endpoints first, then by successive halving, so a round of
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

from ntk_dist.analysis.phases import PHASES
from ntk_dist.core import validate
from ntk_dist.study.search import (
    ETA_PARAM,
    SAMPLERS,
    WIDTH_PARAM,
    eta_range,
    grid_points,
    search_field,
)

DEFAULT_N_INITIAL = 9
_REFINE_FACTOR = 64.0  # brackets are refined past the target down to resolution / 64
_MIN_LOG_GAP = 1e-9


class BoundarySampler(optuna.samplers.BaseSampler):
    """Proposes (width, eta * lambda0) points near phase changes (module docstring).

    Args:
      widths: the sweep's widths (positive ints, the ``width`` param's choices).
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
    ):
        self.widths = validate.positive_ints(widths, "widths")
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
        width = trial.params.get(WIDTH_PARAM)
        point = self.propose(observed, pending, width=width)
        if param_name == WIDTH_PARAM:
            return next(c for c in param_distribution.choices if c == point[0])
        return point[1]

    def propose(
        self,
        observed: Sequence[tuple[int, float, Sequence[str]]],
        pending: Sequence[tuple[int, float]],
        *,
        width: int | None = None,
    ) -> tuple[int, float]:
        """The next point, a pure function of the history.

        Args:
          observed: (width, eta_lambda0, phase labels of its seeds) per finished trial.
          pending: (width, eta_lambda0) of trials running or otherwise taken.
          width: restrict the proposal to this width (already chosen for the trial).

        Returns:
          (width, eta_lambda0).
        """
        widths = self.widths if width is None else (int(width),)
        labels: dict[int, dict[float, set[str]]] = {w: {} for w in widths}
        taken: dict[int, set[float]] = {w: set() for w in widths}
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
            for order, w in enumerate(widths)
            for key, x, y in self._intervals(labels[w], taken[w], order)
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
        if name == WIDTH_PARAM:
            if not isinstance(dist, CategoricalDistribution) or sorted(dist.choices) != sorted(
                self.widths
            ):
                raise ValueError(
                    f"param {WIDTH_PARAM!r} must be suggested as a categorical over the "
                    f"sampler's widths {list(self.widths)}, got {dist!r}"
                )
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
      (observed, pending): ``observed`` lists (width, eta_lambda0, phases) of COMPLETE
      trials with a ``"phases"`` user attribute; ``pending`` lists (width, eta_lambda0)
      of every other trial whose two params are known (RUNNING, WAITING with enqueued
      params, FAIL, or COMPLETE without phases): those points count as taken.
    """
    observed, pending = [], []
    for t in study.get_trials(deepcopy=False):
        if t.number == exclude:
            continue
        params = t.params or t.system_attrs.get("fixed_params") or {}
        if WIDTH_PARAM not in params or ETA_PARAM not in params:
            continue
        point = (int(params[WIDTH_PARAM]), float(params[ETA_PARAM]))
        phases = t.user_attrs.get("phases")
        if t.state == TrialState.COMPLETE and phases:
            bad = [p for p in phases if p not in PHASES]
            if bad:
                raise ValueError(
                    f"trial {t.number}: user_attrs['phases'] must hold labels from {PHASES}, "
                    f"got {bad}"
                )
            observed.append((*point, tuple(phases)))
        else:
            pending.append(point)
    return observed, pending


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
        self.points = [(int(p[WIDTH_PARAM]), float(p[ETA_PARAM])) for p in points]

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        observed, pending = history(study, exclude=trial.number)
        taken = {(w, eta) for w, eta, _ in observed} | set(pending)
        width = trial.params.get(WIDTH_PARAM)
        for w, eta in self.points:
            if (w, eta) not in taken and width in (None, w):
                return w if param_name == WIDTH_PARAM else eta
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
