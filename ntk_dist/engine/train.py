"""Training many finite networks at once: jitted, vmapped ``lax.scan`` s over chunks of a batch.

Conventions (docs/theory.md §3-§5): loss L = 1/(2m) sum_alpha ||f(x_alpha) - y_alpha||^2,
updates theta <- theta - eta grad L, sharpness lambda = top eigenvalue of
Theta_hat(X, X) / m measured on each job's own network, and learning rates reported as
eta * lambda0. A :class:`TrainJob` with ``lr_units="lambda0"`` gives eta * lambda0; the
batch first measures lambda0 for every job (vmapped) and then sets eta = lr / lambda0.

Jobs that share every shape (model, data shapes, optimiser, steps, record schedule,
options; :attr:`TrainJob.batch_key`) train together in :func:`train_batch`: the seeds,
learning rates, momenta and data arrays are stacked along a leading axis and one
compiled program advances a chunk of them at a time. Step counts, record steps and
learning rates are runtime values of that program, so jobs of different step budgets
(different batches) still share it; a worker compiles each (model, options, chunk
size) program once. A job's record is a function of its own fields
only: batching changes nothing but the floating-point order of XLA's batched kernels.

Divergence rule (docs/theory.md §5 pitfalls: catapult peaks are O(n) in loss). A job
diverges at the first step t whose train loss is non-finite or exceeds

    divergence_factor * n * max(1, loss_initial),

with n the largest hidden width. Toy catapult peaks stay below ~n * loss scale, so the
default factor 1e3 never calls a catapult divergent, while a divergent run (loss
growing geometrically) crosses it within a few dozen steps. From that step on the
job is frozen inside the scan (masked updates): its values are NaN in the records and
its neighbours in the batch are untouched.

The linearised twin (docs/theory.md §4, ``linearised=True``): f_lin(x; theta) = f(x; theta_0)
+ J(x; theta_0)(theta - theta_0), trained with the same optimiser, eta and minibatches;
``sup_lin_gap`` = sup over every step t of ||f_t(X) - f_lin,t(X)||_F on the training
inputs, tracked until either model diverges.

Cost per step and job: one forward and backward pass (two with ``linearised``, whose
tangent pass doubles it again), plus a full-batch forward for the tracked loss under SGD;
at each record step one sharpness (dense: O((mk)^2 n) per layer to build Theta_hat and
O((mk)^3) eigvalsh; Lanczos above 2048 rows). Memory per job: a few copies of the
parameters (theta, theta_0, velocity, twin) plus the records.
"""

from __future__ import annotations

import time
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa

from ntk_dist.core import validate
from ntk_dist.engine import toy
from ntk_dist.engine.chunks import cpu_chunk, toy_chunk
from ntk_dist.engine.data import load
from ntk_dist.engine.jobs import TrainJob
from ntk_dist.engine.records import RECORD_SCHEMA
from ntk_dist.models.empirical import empirical_ntk
from ntk_dist.models.hessian import measured_sharpness
from ntk_dist.models.networks import CatapultToy, FCNetwork, param_count


class _Static(NamedTuple):
    """The compile-time part of a batch (hashable). Step counts, record intervals,
    learning rates, momenta and seeds are runtime values, so jobs that differ only in
    those share one compiled program."""

    model: FCNetwork | CatapultToy
    optimizer: str
    batch_size: int | None
    lr_in_lambda0: bool
    probe_points: int
    predict_test: bool
    test_ntk: bool
    linearised: bool
    sharpness: str
    sharpness_method: str
    width: int


def _tree_where(cond, a, b):
    return jax.tree_util.tree_map(lambda u, v: jnp.where(cond, u, v), a, b)


def _tree_norm(tree):
    return jnp.sqrt(sum(jnp.sum(leaf**2) for leaf in jax.tree_util.tree_leaves(tree)))


def _half_mse(f, y):
    return 0.5 * jnp.sum((f - y) ** 2) / y.shape[0]


def _keys(key):
    """(initialisation key, minibatch key) of a job's PRNGKey(seed)."""
    return jax.random.split(key)


def _init(model, key, in_dim, dtype):
    # Drawn in float32 and cast, so that a seed names the same network in either dtype.
    params = model.init(key, in_dim, jnp.float32)
    return jax.tree_util.tree_map(lambda a: a.astype(dtype), params)


def initial_params(job: TrainJob):
    """The parameters theta_0 of ``job``'s network at initialisation (its dtype).

    Training starts from exactly these (same seed derivation), so a record can be
    reproduced or extended from them.
    """
    with jax.enable_x64(job.dtype == "float64"):
        init_key, _ = _keys(jax.random.PRNGKey(job.seed))
        return _init(job.model, init_key, job.data.dim, jnp.dtype(job.dtype))


def _run_one(cfg: _Static, intervals, key, x, y, xt, yt, lr, mu, factor):
    """Train one job; vmapped over every argument after ``intervals``.

    ``intervals``: steps between consecutive record steps, padded with zeros to a
    bucket length (:data:`RECORD_BUCKET`); a zero interval records nothing (a
    ``lax.cond`` on the unbatched interval skips the record's computation).
    """
    model = cfg.model
    init_key, batch_key = _keys(key)
    # The toy trains in its row layout and by its closed forms (ntk_dist.engine.toy);
    # ``own`` maps the training state's parameters back to the model's layout.
    is_toy = isinstance(model, CatapultToy)
    own = toy.from_rows if is_toy else lambda p: p
    params0 = _init(model, init_key, x.shape[1], x.dtype)
    params0 = toy.to_rows(params0) if is_toy else params0
    apply = lambda p, z: model.apply(own(p), z)
    nan = jnp.asarray(jnp.nan, x.dtype)
    if toy.has_closed_form(model, cfg.sharpness, cfg.sharpness_method, *y.shape):
        lam = lambda p: toy.ntk_sharpness(model, p, x)
    else:
        lam = lambda p: measured_sharpness(
            cfg.sharpness, model, own(p), x, y, method=cfg.sharpness_method
        )

    lambda0 = lam(params0)
    eta = lr / lambda0 if cfg.lr_in_lambda0 else lr
    loss0 = _half_mse(apply(params0, x), y)
    threshold = factor * cfg.width * jnp.maximum(1.0, loss0)

    def value_and_grad(fn, p, weights):
        """Tracked full-batch loss, outputs f(X) and the gradient of the minibatch loss.

        The minibatch loss is 1/2 sum_i w_i ||f_i - y_i||^2 with w_i = 1/b on the batch
        rows and 0 elsewhere (w = 1/m for full-batch GD): one pass over X serves both.
        ``fn=None``: the toy's own network, by its closed-form gradient
        (:mod:`ntk_dist.engine.toy`).
        """
        if fn is None:
            f, g = toy.value_and_grad(model, p, x, y, weights)
            return _half_mse(f, y), f, g

        def objective(q):
            f = fn(q)
            return 0.5 * jnp.sum(weights[:, None] * (f - y) ** 2), f

        (_, f), g = jax.value_and_grad(objective, has_aux=True)(p)
        return _half_mse(f, y), f, g

    def update(p, vel, g):
        if cfg.optimizer == "momentum":
            vel = jax.tree_util.tree_map(lambda v, gi: mu * v - eta * gi, vel, g)
            return jax.tree_util.tree_map(jnp.add, p, vel), vel
        return jax.tree_util.tree_map(lambda q, gi: q - eta * gi, p, g), vel

    f_train = lambda p: apply(p, x)
    train_fn = None if is_toy else f_train
    if cfg.linearised:
        # docs/theory.md §4: f_lin(theta) = f(theta_0) + J(theta_0)(theta - theta_0); linearize
        # once, so each step costs one tangent pass (and its transpose) over X.
        f_init, jvp_init = jax.linearize(f_train, params0)
        f_lin = lambda p: f_init + jvp_init(jax.tree_util.tree_map(jnp.subtract, p, params0))

    def track(s, loss_t, t):
        bad = ~jnp.isfinite(loss_t) | (loss_t > threshold)
        was = s["diverged"]
        higher = ~(was | bad) & (loss_t > s["peak"])
        s = dict(s)
        s["peak"] = jnp.where(higher, loss_t, s["peak"])
        s["peak_step"] = jnp.where(higher, t, s["peak_step"])
        s["div_step"] = jnp.where(bad & ~was, t, s["div_step"])
        s["diverged"] = was | bad
        return s

    def step(_, s):
        t = s["t"]
        weights = jnp.full(x.shape[0], 1.0 / x.shape[0], x.dtype)
        if cfg.batch_size is not None:
            k = jax.random.fold_in(batch_key, t)
            idx = jax.random.choice(k, x.shape[0], (cfg.batch_size,), replace=False)
            weights = jnp.zeros_like(weights).at[idx].set(1.0 / cfg.batch_size)
        loss_t, f_t, g = value_and_grad(train_fn, s["params"], weights)
        s = track(s, loss_t, t)
        frozen = s["diverged"]
        new, vel = update(s["params"], s["vel"], g)
        s["params"] = _tree_where(frozen, s["params"], new)
        s["vel"] = _tree_where(frozen, s["vel"], vel)
        if cfg.linearised:
            loss_l, fl_t, g_l = value_and_grad(f_lin, s["lin"], weights)
            lin_bad = s["lin_div"] | ~jnp.isfinite(loss_l) | (loss_l > threshold)
            gap = jnp.sqrt(jnp.sum((f_t - fl_t) ** 2))
            s["gap"] = jnp.where(lin_bad | frozen, s["gap"], jnp.maximum(s["gap"], gap))
            new_l, vel_l = update(s["lin"], s["lin_vel"], g_l)
            s["lin"] = _tree_where(lin_bad, s["lin"], new_l)
            s["lin_vel"] = _tree_where(lin_bad, s["lin_vel"], vel_l)
            s["lin_div"] = lin_bad
        s["t"] = t + 1
        return s

    def record(s):
        p, dead = s["params"], s["diverged"]
        out = {
            "train_loss": _half_mse(apply(p, x), y),
            "lambda_t": lam(p),
        }
        if xt.shape[0]:
            out["test_loss"] = _half_mse(apply(p, xt), yt)
        if cfg.predict_test:
            out["test_pred"] = apply(p, xt).ravel()
        if cfg.test_ntk:
            out["test_ntk"] = empirical_ntk(model, own(p), xt[:1], xt).ravel()
        if cfg.probe_points:
            out["probe_ntk"] = empirical_ntk(model, own(p), x[: cfg.probe_points]).ravel()
        return {name: jnp.where(dead, nan, v) for name, v in out.items()}

    # Only heavy-ball momentum has a velocity; gd/sgd carry an empty tree, which saves a
    # parameter-sized buffer (1.2 GB for a width-10000 depth-4 network in float32).
    if cfg.optimizer == "momentum":
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params0)
    else:
        zeros = ()
    state = {
        "params": params0,
        "vel": zeros,
        "t": jnp.asarray(0, jnp.int32),
        "diverged": jnp.asarray(False),
        "div_step": jnp.asarray(-1, jnp.int32),
        "peak": jnp.asarray(-jnp.inf, x.dtype),
        "peak_step": jnp.asarray(0, jnp.int32),
    }
    if cfg.linearised:
        state.update(lin=params0, lin_vel=zeros, lin_div=jnp.asarray(False), gap=0.0 * loss0)

    first = record(state)
    blank = lambda s: jax.tree_util.tree_map(jnp.zeros_like, first)

    def interval(s, n):
        # The toy's loop body is two steps: a one-step body updates u from v and v from u
        # in place, so XLA copies both every step (as much memory traffic as the step
        # itself); across two steps the first step's outputs are fresh buffers and no
        # copy is needed (bench/RESULTS.md). Network programs keep one step (compile time).
        if is_toy:
            s = jax.lax.fori_loop(0, n // 2, lambda i, s: step(i, step(i, s)), s)
            s = jax.lax.fori_loop(0, n % 2, step, s)
        else:
            s = jax.lax.fori_loop(0, n, step, s)
        return s, jax.lax.cond(n > 0, record, blank, s)

    state, rest = jax.lax.scan(interval, state, intervals)
    records = {k: jnp.concatenate([first[k][None], rest[k]]) for k in first}
    state = track(state, _half_mse(apply(state["params"], x), y), state["t"])

    summary = {
        "lambda0": lambda0,
        "eta": eta,
        "loss_initial": loss0,
        "loss_peak": state["peak"],
        "peak_step": state["peak_step"],
        "diverged": state["diverged"],
        "diverged_step": state["div_step"],
        "param_change": _tree_norm(jax.tree_util.tree_map(jnp.subtract, state["params"], params0))
        / _tree_norm(params0),
    }
    if cfg.linearised:
        summary["sup_lin_gap"] = state["gap"]
    return summary, records


#: Record intervals are padded with zeros to a multiple of this, so that step budgets
#: whose record schedules differ in length by a few points share a compiled program.
RECORD_BUCKET = 16


@partial(jax.jit, static_argnums=0)
def _run_chunk(cfg: _Static, intervals, *args):
    # The ``lax.scan`` over record intervals does not depend on the member, so it is
    # vmapped with ``in_axes=None`` and its zero-interval cond stays a branch.
    return jax.vmap(partial(_run_one, cfg), in_axes=(None,) + (0,) * len(args))(intervals, *args)


def _pow2_at_least(n: int) -> int:
    return 1 << (n - 1).bit_length()


def chunk_sizes(n_jobs: int, chunk: int) -> list[int]:
    """Compiled batch sizes of the chunks that train ``n_jobs`` jobs ``chunk`` at a time.

    Full chunks of ``chunk`` jobs, then the remainder padded to the next power of two
    (at most ``chunk``): a shape group compiles at most 1 + log2(chunk) programs
    whatever its job counts, and padding wastes less than half of the last chunk.
    """
    sizes = [chunk] * (n_jobs // chunk)
    if n_jobs % chunk:
        sizes.append(min(chunk, _pow2_at_least(n_jobs % chunk)))
    return sizes


def auto_chunk(job: TrainJob, n_jobs: int) -> int:
    """Jobs per vmapped chunk when ``chunk_size`` is not given.

    On accelerators the whole batch (padded to a power of two); on CPU the measured
    table :data:`ntk_dist.engine.chunks.CPU_CHUNKS`, keyed by the job's parameter
    count and training-set size (:func:`ntk_dist.engine.chunks.cpu_chunk`), and for
    the catapult toy (memory-bound) :func:`ntk_dist.engine.chunks.toy_chunk`.
    """
    if jax.default_backend() != "cpu":
        return _pow2_at_least(n_jobs)
    n_params = param_count(jax.eval_shape(lambda: initial_params(job)))
    if isinstance(job.model, CatapultToy) and not job.linearised:
        chunk = toy_chunk(n_params, np.dtype(job.dtype).itemsize)
    else:
        chunk = cpu_chunk(n_params, job.data.n_train, linearised=job.linearised)
    return min(chunk, _pow2_at_least(n_jobs))


def train_batch(jobs, *, chunk_size: int | None = None) -> pa.Table:
    """Train jobs that share a :attr:`TrainJob.batch_key`, in one compiled program.

    Args:
      jobs: non-empty sequence of :class:`TrainJob` with equal ``batch_key`` (group
        arbitrary jobs with :func:`ntk_dist.distributed.execute.plan_batches`).
      chunk_size: jobs per vmapped chunk (None: :func:`auto_chunk`).

    Returns:
      pa.Table in :data:`ntk_dist.engine.records.RECORD_SCHEMA`, one row per job, in order.

    The batch runs as a sequence of vmapped chunks of ``chunk_size`` jobs
    (:func:`chunk_sizes`; a short last chunk is padded with copies of its last job,
    whose results are dropped). The compiled program depends on the model, the
    options and the chunk size only: step counts, record steps (padded to a multiple
    of :data:`RECORD_BUCKET` intervals), learning rates, momenta and seeds are runtime
    values. Chunking and padding change nothing but floating-point order.

    Runs under float64 when the jobs ask for it (``jax.enable_x64`` is scoped to this
    call) and with "highest" matmul precision, so float32 on GPUs is true float32
    rather than TF32. Memory: one chunk's training state at a time, and every job's
    records.
    """
    jobs = list(jobs)
    if not jobs:
        raise ValueError("jobs must not be empty")
    if chunk_size is not None:
        chunk_size = validate.positive_int(chunk_size, "chunk_size")
    for i, job in enumerate(jobs):
        if not isinstance(job, TrainJob):
            raise ValueError(f"jobs[{i}] must be a TrainJob, got {type(job).__name__}")
        if job.batch_key != jobs[0].batch_key:
            raise ValueError(
                f"jobs[{i}] differs in shape/options from jobs[0] and cannot share a batch; "
                "group jobs with ntk_dist.distributed.execute.plan_batches"
            )
    head = jobs[0]
    cfg = _Static(
        model=head.model,
        optimizer=head.optimizer,
        batch_size=head.batch_size,
        lr_in_lambda0=head.lr_units == "lambda0",
        probe_points=head.probe_points,
        predict_test=head.predict_test,
        test_ntk=head.test_ntk,
        linearised=head.linearised,
        sharpness=head.sharpness,
        sharpness_method=head.sharpness_method,
        width=head.width,
    )
    n, n_records = len(jobs), len(head.record)
    intervals = np.zeros(-(-(n_records - 1) // RECORD_BUCKET) * RECORD_BUCKET, np.int32)
    intervals[: n_records - 1] = np.diff(head.record)
    start = time.perf_counter()
    with jax.enable_x64(head.dtype == "float64"), jax.default_matmul_precision("highest"):
        dtype = np.dtype(head.dtype)
        data = [load(job.data) for job in jobs]
        stack = lambda name: np.stack([getattr(d, name) for d in data]).astype(dtype)
        col = lambda name: np.asarray([getattr(job, name) for job in jobs], dtype)
        args = (
            np.stack([np.asarray(jax.random.PRNGKey(job.seed)) for job in jobs]),
            stack("x_train"),
            stack("y_train"),
            stack("x_test"),
            stack("y_test"),
            col("learning_rate"),
            col("momentum"),
            col("divergence_factor"),
        )
        chunk = auto_chunk(head, n) if chunk_size is None else chunk_size
        outputs, first = [], 0
        for size in chunk_sizes(n, chunk):
            idx = np.minimum(np.arange(first, first + size), n - 1)  # pad: repeat the last
            outputs.append(_run_chunk(cfg, intervals, *(a[idx] for a in args)))
            first += size
        outputs = jax.device_get(outputs)  # one wait: the chunks were dispatched async
    summary, records = (
        {k: np.concatenate([o[part][k] for o in outputs])[:n] for k in outputs[0][part]}
        for part in (0, 1)
    )
    records = {k: v[:, :n_records] for k, v in records.items()}
    wall = (time.perf_counter() - start) / n
    return _to_table(jobs, summary, records, wall)


def _to_table(jobs, summary, records, wall) -> pa.Table:
    head = jobs[0]
    n = len(jobs)
    model = head.model
    fc = isinstance(model, FCNetwork)
    f64 = lambda a: np.asarray(a, np.float64)
    lists = lambda a: [list(map(float, row)) for row in f64(a)]
    nested = lambda a: [[list(map(float, r)) for r in rows] for rows in f64(a)]
    div = np.asarray(summary["diverged"], bool)
    lam0 = f64(summary["lambda0"])
    eta = f64(summary["eta"])
    cols = {
        "tag": [job.tag for job in jobs],
        "model_kind": ["fc" if fc else "toy"] * n,
        "width": [job.width for job in jobs],
        "depth": [model.depth if fc else 1] * n,
        "activation": [model.activation.name if fc else "identity"] * n,
        "sigma_w": [model.sigma_w if fc else None] * n,
        "sigma_b": [model.sigma_b if fc else None] * n,
        "readout_sigma_w": [model.readout_sigma_w if fc else None] * n,
        "parameterization": [head.parameterization] * n,
        "sharpness": [head.sharpness] * n,
        "out_dim": [model.out_dim] * n,
        "dataset": [job.data.name for job in jobs],
        "n_train": [job.data.n_train for job in jobs],
        "data_seed": [job.data.seed for job in jobs],
        "seed": [job.seed for job in jobs],
        "optimizer": [job.optimizer for job in jobs],
        "batch_size": [job.batch_size for job in jobs],
        "momentum": [job.momentum for job in jobs],
        "steps": [job.steps for job in jobs],
        "lr_units": [job.lr_units for job in jobs],
        "dtype": [job.dtype for job in jobs],
        "learning_rate": eta,
        "lambda0": lam0,
        "eta_lambda0": eta * lam0,
        "loss_initial": f64(summary["loss_initial"]),
        "loss_peak": f64(summary["loss_peak"]),
        "peak_step": np.asarray(summary["peak_step"], np.int64),
        "loss_final": f64(records["train_loss"][:, -1]),
        "lambda_final": f64(records["lambda_t"][:, -1]),
        "diverged": div,
        "diverged_step": [
            int(s) if d else None for s, d in zip(summary["diverged_step"], div, strict=True)
        ],
        "param_change": f64(summary["param_change"]),
        "sup_lin_gap": f64(summary["sup_lin_gap"]) if head.linearised else [None] * n,
        "wall_time_s": [wall] * n,
        "batch_jobs": [n] * n,
        "record_steps": [list(head.record)] * n,
        "train_loss": lists(records["train_loss"]),
        "test_loss": lists(records["test_loss"]) if "test_loss" in records else [None] * n,
        "lambda_t": lists(records["lambda_t"]),
        "probe_ntk": nested(records["probe_ntk"]) if head.probe_points else [None] * n,
        "test_pred": nested(records["test_pred"]) if head.predict_test else [None] * n,
        "test_ntk": nested(records["test_ntk"]) if head.test_ntk else [None] * n,
    }
    return pa.Table.from_pydict(cols, schema=RECORD_SCHEMA)


def train(job: TrainJob) -> pa.Table:
    """Train one job (a batch of one); see :func:`train_batch`."""
    return train_batch([job])
