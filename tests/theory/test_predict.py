"""Predictions: closed forms against independent solves and against actual gradient descent."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from ntk_dist.models.empirical import empirical_ntk, ntk_matrix, sharpness
from ntk_dist.models.networks import FCNetwork
from ntk_dist.theory.gp import nngp_posterior, ntk_gp
from ntk_dist.theory.predict import critical_learning_rate, linearized_predict, max_learning_rate

M, N, D = 6, 4, 3  # training points, test points, input dimension


def _data(k, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(M + N, D))
    y = np.sin(x[:M, :1] * np.arange(1, k + 1))  # (M, k)
    return x[:M], x[M:], y


def _net(k=1):
    return FCNetwork.make(depth=2, width=48, out_dim=k, activation="erf", sigma_w=1.5, sigma_b=0.1)


@functools.cache
def _joint_kernels(seed=0):
    """PSD (Theta, K) on X ∪ x*: the empirical NTK and the readout-layer NNGP of a k=1 net."""
    net = _net()
    params = net.init(jax.random.PRNGKey(seed), D, jnp.float64)
    x, xt, _ = _data(1, seed)
    xa = np.concatenate([x, xt])
    theta = np.asarray(ntk_matrix(empirical_ntk(net, params, xa)))
    feats = np.asarray(net.forward(params, xa)[0][-1])
    k = net.sigma_w**2 * feats @ feats.T / feats.shape[1] + net.sigma_b**2
    theta.flags.writeable = k.flags.writeable = False  # cached: shared between tests
    return theta, k


def _split(a):
    return a[:M, :M], a[M:, :M], a[M:, M:]


def _gp(theta, k, y, ts, **kw):
    th, th_tx, _ = _split(theta)
    kk, k_tx, k_tt = _split(k)
    return ntk_gp(th, th_tx, kk, k_tx, k_tt, y, ts, **kw)


# ---------------------------------------------------------------------------------
# NTK-GP


@pytest.mark.parametrize("dynamics", ["flow", "gd"])
def test_time_zero_is_the_prior(dynamics):
    theta, k = _joint_kernels()
    _, _, y = _data(2)
    pred = _gp(theta, k, y, 0, lr=1.0, dynamics=dynamics)
    np.testing.assert_array_equal(pred.mean, np.zeros((N, 2)))
    np.testing.assert_allclose(pred.cov, k[M:, M:], rtol=1e-14)


@pytest.mark.parametrize("dynamics", ["flow", "gd"])
def test_time_infinity_is_kernel_regression(dynamics):
    theta, k = _joint_kernels()
    _, _, y = _data(2)
    lr = 0.5 * max_learning_rate(theta[:M, :M])
    pred = _gp(theta, k, y, np.inf, lr=lr, dynamics=dynamics)
    th, th_tx, _ = _split(theta)
    kk, k_tx, k_tt = _split(k)
    a = scipy.linalg.solve(th, th_tx.T, assume_a="pos").T  # Theta(x*, X) Theta^{-1}
    mean = a @ y
    cov = k_tt + a @ kk @ a.T - a @ k_tx.T - k_tx @ a.T
    scale = np.abs(cov).max()
    np.testing.assert_allclose(pred.mean, mean, rtol=1e-9, atol=1e-10 * np.abs(mean).max())
    np.testing.assert_allclose(pred.cov, cov, rtol=1e-9, atol=1e-10 * scale)


def test_flow_covariance_is_that_of_a_linear_map_of_the_prior():
    # f_lin(x*, t) = f0(x*) + A(t) (Y - f0(X)) with f0 ~ GP(0, K): cov = [I, -A] K [I, -A]^T.
    theta, k = _joint_kernels(1)
    _, _, y = _data(1, 1)
    lr, ts = 0.7, np.array([0.0, 0.5, 3.0, 40.0])
    pred = _gp(theta, k, y, ts, lr=lr, dynamics="flow")
    th, th_tx, _ = _split(theta)
    for i, t in enumerate(ts):
        decay = scipy.linalg.expm(-lr / M * th * t)
        a = th_tx @ scipy.linalg.solve(th, np.eye(M) - decay, assume_a="sym")
        b = np.concatenate([np.eye(N), -a], axis=1)
        order = np.r_[M : M + N, 0:M]  # test points first, to match b
        cov = b @ k[np.ix_(order, order)] @ b.T
        np.testing.assert_allclose(pred.cov[i], cov, rtol=1e-8, atol=1e-10 * np.abs(cov).max())
        np.testing.assert_allclose(pred.mean[i], a @ y, rtol=1e-8, atol=1e-12)


def test_trained_readout_limit_is_the_nngp_posterior():
    # Theta = K (only the readout trains): NTK-GP at t = inf is exact GP inference (Lee et al.).
    _, k = _joint_kernels(2)
    _, _, y = _data(2, 2)
    gp = _gp(k, k, y, np.inf, lr=1.0)
    post = nngp_posterior(*_split(k), y)
    np.testing.assert_allclose(gp.mean, post.mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(gp.cov, post.cov, rtol=1e-6, atol=1e-8 * np.abs(k).max())


@pytest.mark.parametrize("dynamics, lr_frac", [("flow", 3.0), ("gd", 0.4), ("gd", 1.1)])
def test_ntk_gp_covariances_are_psd(dynamics, lr_frac):
    theta, k = _joint_kernels(3)
    _, _, y = _data(1, 3)
    lr = lr_frac * max_learning_rate(theta[:M, :M])
    ts = np.array([0, 1, 7, 100] + ([np.inf] if lr_frac < 1 or dynamics == "flow" else []))
    covs = _gp(theta, k, y, ts, lr=lr, dynamics=dynamics).cov
    for cov in np.asarray(covs):
        assert np.linalg.eigvalsh(cov).min() >= -1e-10 * np.abs(cov).max()


def test_times_are_vectorised_and_scalar_times_drop_the_axis():
    theta, k = _joint_kernels()
    _, _, y = _data(2)
    ts = np.array([0, 3, 50])
    many = _gp(theta, k, y, ts, lr=0.3, dynamics="gd")
    assert many.mean.shape == (3, N, 2) and many.cov.shape == (3, N, N)
    for i, t in enumerate(ts):
        one = _gp(theta, k, y, int(t), lr=0.3, dynamics="gd")
        assert one.mean.shape == (N, 2)
        np.testing.assert_allclose(many.mean[i], one.mean, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(many.cov[i], one.cov, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------
# NNGP posterior


def test_nngp_posterior_matches_direct_solve_with_noise():
    _, k = _joint_kernels(4)
    _, _, y = _data(3, 4)
    kk, k_tx, k_tt = _split(k)
    post = nngp_posterior(kk, k_tx, k_tt, y, noise_var=0.01)
    a = kk + 0.01 * np.eye(M)
    np.testing.assert_allclose(post.mean, k_tx @ scipy.linalg.solve(a, y), rtol=1e-10)
    cov = k_tt - k_tx @ scipy.linalg.solve(a, k_tx.T)
    np.testing.assert_allclose(post.cov, cov, rtol=1e-10, atol=1e-12)
    assert np.linalg.eigvalsh(post.cov).min() >= -1e-12


def test_nngp_posterior_interpolates_training_points_without_noise():
    _, k = _joint_kernels(5)
    _, _, y = _data(1, 5)
    kk = k[:M, :M]
    post = nngp_posterior(kk, kk, kk, y)
    np.testing.assert_allclose(post.mean, y, atol=1e-8)
    np.testing.assert_allclose(post.cov, 0.0, atol=1e-8 * np.abs(kk).max())


# ---------------------------------------------------------------------------------
# Linearised network: closed form against gradient descent on the actual f_lin


@functools.partial(jax.jit, static_argnums=(0, 6))
def _linearised_gd(net, params0, x, xt, y, lr, steps):
    """Run GD on L = 1/(2m) ||f_lin(X) - Y||^2, f_lin built with jax.jvp around theta_0.
    One compiled program per (net, shapes, steps): the learning rate is traced."""

    def f_lin(p, xs):
        dp = jax.tree_util.tree_map(jnp.subtract, p, params0)
        f0, df = jax.jvp(lambda q: net.apply(q, xs), (params0,), (dp,))
        return f0 + df

    loss = lambda p: 0.5 / x.shape[0] * jnp.sum((f_lin(p, x) - y) ** 2)

    def step(p, _):
        outputs = (f_lin(p, x), f_lin(p, xt))  # before the update: index t = after t steps
        return jax.tree_util.tree_map(lambda a, g: a - lr * g, p, jax.grad(loss)(p)), outputs

    return jax.lax.scan(step, params0, None, length=steps + 1)[1]


@pytest.mark.parametrize("k, eta_lambda", [(1, 0.6), (1, 1.9), (3, 1.2), (1, 2.05)])
def test_discrete_closed_form_matches_100_steps_of_linearised_gd(k, eta_lambda):
    net = _net(k)
    params0 = net.init(jax.random.PRNGKey(7), D, jnp.float64)
    x, xt, y = _data(k, 7)
    lam0 = float(sharpness(net, params0, x))
    lr = eta_lambda / lam0
    train_gd, test_gd = (np.asarray(a) for a in _linearised_gd(net, params0, x, xt, y, lr, 100))

    ts = np.array([0, 1, 2, 17, 100])
    traj = linearized_predict(
        ntk_matrix(empirical_ntk(net, params0, x)),
        net.apply(params0, x),
        y,
        ts,
        ntk_matrix(empirical_ntk(net, params0, xt, x)),
        net.apply(params0, xt),
        lr=lr,
        dynamics="gd",
    )
    for got, want in ((traj.train, train_gd[ts]), (traj.test, test_gd[ts])):
        scale = np.abs(want).max(axis=(1, 2), keepdims=True)
        assert np.all(np.abs(np.asarray(got) - want) <= 1e-8 * scale)


def test_flow_closed_form_matches_matrix_exponential():
    k = 2
    net = _net(k)
    params0 = net.init(jax.random.PRNGKey(8), D, jnp.float64)
    x, xt, y = _data(k, 8)
    th = np.asarray(ntk_matrix(empirical_ntk(net, params0, x)))
    th_tx = np.asarray(ntk_matrix(empirical_ntk(net, params0, xt, x)))
    f0, f0t = np.asarray(net.apply(params0, x)), np.asarray(net.apply(params0, xt))
    lr, ts = 2.0, np.array([0.0, 0.3, 5.0, 60.0, np.inf])
    traj = linearized_predict(th, f0, y, ts, th_tx, f0t, lr=lr)
    for i, t in enumerate(ts):
        decay = np.zeros_like(th) if np.isinf(t) else scipy.linalg.expm(-lr / M * th * t)
        train = y.ravel() + decay @ (f0 - y).ravel()
        moved = (np.eye(M * k) - decay) @ (y - f0).ravel()
        test = f0t.ravel() + th_tx @ scipy.linalg.solve(th, moved)
        np.testing.assert_allclose(traj.train[i].ravel(), train, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(traj.test[i].ravel(), test, rtol=1e-8, atol=1e-10)


def test_linearized_predict_train_only():
    net = _net()
    params0 = net.init(jax.random.PRNGKey(9), D, jnp.float64)
    x, _, y = _data(1, 9)
    traj = linearized_predict(
        ntk_matrix(empirical_ntk(net, params0, x)), net.apply(params0, x), y, np.inf, lr=1.0
    )
    assert traj.test is None
    np.testing.assert_allclose(traj.train, y, atol=1e-9)


# ---------------------------------------------------------------------------------
# Learning rates


@pytest.mark.parametrize("k", [1, 2])
def test_max_learning_rate_is_two_over_sharpness_and_separates_convergence(k):
    net = _net(k)
    params0 = net.init(jax.random.PRNGKey(10), D, jnp.float64)
    x, _, y = _data(k, 10)
    th = np.asarray(ntk_matrix(empirical_ntk(net, params0, x)))
    eta_max = max_learning_rate(th, num_outputs=k)
    np.testing.assert_allclose(eta_max, 2 / float(sharpness(net, params0, x)), rtol=1e-12)
    # Function-space GD on our loss (docs/theory.md §3): f <- f - eta/m Theta (f - y).
    for frac, converges in ((0.97, True), (1.03, False)):
        g = np.asarray(net.apply(params0, x) - y).ravel()
        for _ in range(3000):
            g = g - frac * eta_max / M * th @ g
        assert (np.linalg.norm(g) < 1e-6) == converges


def test_critical_learning_rate_minimises_the_slowest_contraction():
    theta, _ = _joint_kernels(11)
    th = theta[:M, :M]
    lam = np.linalg.eigvalsh(th) / M
    etas = np.linspace(0.01, 2 / lam[-1], 20001)
    worst = np.abs(1 - etas[:, None] * lam[None, :]).max(axis=1)
    eta_c = critical_learning_rate(th)
    assert abs(eta_c - etas[np.argmin(worst)]) <= 2 * (etas[1] - etas[0])
    assert eta_c < max_learning_rate(th)


# ---------------------------------------------------------------------------------
# Bad input


def _good():
    theta, k = _joint_kernels()
    _, _, y = _data(1)
    th, th_tx, _ = _split(theta)
    kk, k_tx, k_tt = _split(k)
    return dict(
        theta_train=th, theta_test_train=th_tx, k_train=kk, k_test_train=k_tx, k_test_test=k_tt
    ), y


def _call_gp(overrides, y_over=None, ts=(0, 1), **kw):
    kernels, y = _good()
    kernels.update(overrides)
    kw = {"lr": 1.0, **kw}
    return ntk_gp(*kernels.values(), y if y_over is None else y_over, ts, **kw)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: _call_gp({"theta_train": np.full((M, M), np.nan)}), "theta_train"),
        (lambda: _call_gp({"theta_test_train": np.ones((N, M + 1))}), "theta_test_train"),
        (lambda: _call_gp({"k_train": np.ones((M - 1, M - 1))}), "k_train"),
        (lambda: _call_gp({"k_test_test": np.ones((N, N + 1))}), "k_test_test"),
        (lambda: _call_gp({"theta_train": np.triu(np.ones((M, M)))}), "theta_train must be sym"),
        (lambda: _call_gp({}, y_over=np.ones(M)), "y_train"),
        (lambda: _call_gp({}, y_over=np.ones((M + 1, 1))), "y_train"),
        (lambda: _call_gp({}, ts=(-1.0,)), "ts"),
        (lambda: _call_gp({}, ts=(1.5,), dynamics="gd"), "ts .*integers"),
        (lambda: _call_gp({}, ts=[[1]]), "ts"),
        (lambda: _call_gp({}, lr=0.0), "lr"),
        (lambda: _call_gp({}, dynamics="sgd"), "dynamics"),
        (lambda: _call_gp({}, diag_reg=-1.0), "diag_reg"),
        (lambda: _call_gp({"theta_train": -np.eye(M)}, ts=np.inf), "theta_train is singular"),
        (lambda: _call_gp({}, ts=np.inf, lr=1e6, dynamics="gd"), "diverges"),
    ],
)
def test_ntk_gp_rejects_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_rounding_asymmetry_is_accepted_in_float32():
    kernels, y = _good()
    th = kernels["theta_train"].astype(np.float32)
    th[0, 1] *= 1 + 3e-6  # a few float32 ulps, as J J^T summed over many parameters gives
    kernels.update(theta_train=th)
    pred = ntk_gp(*kernels.values(), y, 10, lr=1.0)
    assert np.all(np.isfinite(pred.cov))


def test_singular_kernel_at_infinity_is_fixed_by_diag_reg():
    pred = _call_gp({"theta_train": np.ones((M, M))}, ts=np.inf, diag_reg=1e-6)
    assert np.all(np.isfinite(pred.mean)) and np.all(np.isfinite(pred.cov))


def test_other_entry_points_reject_bad_input():
    kernels, y = _good()
    kk = kernels["k_train"]
    with pytest.raises(ValueError, match="noise_var"):
        nngp_posterior(kk, kernels["k_test_train"], kernels["k_test_test"], y, noise_var=-0.1)
    with pytest.raises(ValueError, match="not positive definite"):
        nngp_posterior(-np.eye(M), kernels["k_test_train"], kernels["k_test_test"], y)
    th = kernels["theta_train"]
    with pytest.raises(ValueError, match="theta_train has shape"):
        linearized_predict(th, np.zeros((M, 2)), np.ones((M, 2)), 1, lr=1.0)
    with pytest.raises(ValueError, match="f0_test"):
        linearized_predict(th, np.zeros((M, 1)), y, 1, kernels["theta_test_train"], lr=1.0)
    with pytest.raises(ValueError, match="f0_train"):
        linearized_predict(th, np.zeros((M, 1)) + np.inf, y, 1, lr=1.0)
    with pytest.raises(ValueError, match="num_outputs"):
        max_learning_rate(th, num_outputs=4)


def test_public_names_are_exported():
    import ntk_dist
    from ntk_dist.theory import gp, predict

    modules = dict.fromkeys(("GaussianPrediction", "nngp_posterior", "ntk_gp"), gp)
    names = ("Trajectory", "critical_learning_rate", "linearized_predict", "max_learning_rate")
    modules.update(dict.fromkeys(names, predict))
    for name, module in modules.items():
        assert name in ntk_dist.__all__ and getattr(ntk_dist, name) is getattr(module, name)


def test_diag_reg_regularises_theta_only():
    # neural-tangents' diag_reg: Theta(X, X) + r mean(diag Theta) I in the dynamics,
    # K(X, X) unregularised in the covariance (a SciPy re-implementation of §4).
    theta, k = _joint_kernels(2)
    _, _, y = _data(1, 2)
    lr, t, reg = 0.7, 3.0, 0.05
    pred = _gp(theta, k, y, t, lr=lr, diag_reg=reg)
    th, th_tx, _ = _split(theta)
    kk, k_tx, k_tt = _split(k)
    th_r = th + reg * np.trace(th) / M * np.eye(M)
    a = th_tx @ scipy.linalg.solve(th_r, np.eye(M) - scipy.linalg.expm(-lr / M * th_r * t))
    cov = k_tt + a @ kk @ a.T - a @ k_tx.T - k_tx @ a.T
    np.testing.assert_allclose(pred.cov, cov, rtol=1e-8, atol=1e-10 * np.abs(cov).max())
    np.testing.assert_allclose(pred.mean, a @ y, rtol=1e-8, atol=1e-12)
