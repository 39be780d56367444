"""NNGP dynamics (readout-only training): its limits, SciPy matrix functions, and an
ensemble of wide networks whose readout alone is trained by gradient descent."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from ntk_dist import FC, FCNetwork, fc_kernel, nngp_gp, nngp_posterior
from ntk_dist.theory.predict import max_learning_rate

M, N, D = 5, 3, 3  # training points, test points, input dimension
ARCH = FC(depth=1, activation="erf", sigma_w=1.5, sigma_b=0.1)


@functools.cache
def _problem():
    """Train/test NNGP blocks of ARCH on random inputs, and two target columns."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(M + N, D))
    k = np.asarray(fc_kernel(x, arch=ARCH, get="nngp").nngp)
    y = np.sin(x[:M, :1] * np.array([1.0, 2.0]))
    for a in (k, y, x):
        a.flags.writeable = False  # cached: shared between tests
    return x, k, y


def _blocks(k):
    return k[:M, :M], k[M:, :M], k[M:, M:]


@pytest.mark.parametrize("dynamics", ["flow", "gd"])
def test_time_zero_is_the_prior(dynamics):
    _, k, y = _problem()
    pred = nngp_gp(*_blocks(k), y, 0, lr=1.0, dynamics=dynamics)
    np.testing.assert_array_equal(pred.mean, np.zeros((N, 2)))
    np.testing.assert_allclose(pred.cov, k[M:, M:], rtol=1e-14)


@pytest.mark.parametrize("diag_reg", [0.0, 1e-3])
@pytest.mark.parametrize("dynamics", ["flow", "gd"])
def test_time_infinity_is_the_nngp_posterior(dynamics, diag_reg):
    _, k, y = _problem()
    lr = 0.5 * max_learning_rate(k[:M, :M])
    pred = nngp_gp(*_blocks(k), y, np.inf, lr=lr, dynamics=dynamics, diag_reg=diag_reg)
    post = nngp_posterior(*_blocks(k), y, diag_reg=diag_reg)
    scale = np.abs(post.cov).max()
    np.testing.assert_allclose(pred.mean, post.mean, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(pred.cov, post.cov, rtol=1e-8, atol=1e-10 * scale)


def test_finite_times_match_scipy_matrix_exponentials():
    # docs/theory.md §4 with Theta = K: mean = K* K^{-1} (I - e^{-eta' K t}) Y and
    # cov = K** - K* K^{-1} (I - e^{-2 eta' K t}) K*^T.
    _, k, y = _problem()
    kk, k_tx, k_tt = _blocks(k)
    lr, ts = 0.8, np.array([0.3, 4.0, 50.0])
    pred = nngp_gp(kk, k_tx, k_tt, y, ts, lr=lr)
    assert pred.mean.shape == (3, N, 2) and pred.cov.shape == (3, N, N)
    for i, t in enumerate(ts):
        decay = scipy.linalg.expm(-lr / M * kk * t)
        a = k_tx @ scipy.linalg.solve(kk, np.eye(M) - decay, assume_a="sym")
        b = k_tx @ scipy.linalg.solve(kk, np.eye(M) - decay @ decay, assume_a="sym")
        cov = k_tt - b @ k_tx.T
        np.testing.assert_allclose(pred.mean[i], a @ y, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(pred.cov[i], cov, rtol=1e-8, atol=1e-10 * np.abs(k_tt).max())


WIDTH, MEMBERS, OUTPUTS, STEPS = 2048, 256, 8, (3, 12, 60)


def _readout_gd_ensemble(x, y, lr):
    """Test outputs after STEPS steps of gradient descent on the readout (weights and
    bias) alone, from MEMBERS initialisations of a width-WIDTH network of ARCH; the
    hidden layer stays frozen. Shape (MEMBERS, len(STEPS), N, OUTPUTS)."""
    net = FCNetwork.from_arch(ARCH, WIDTH, OUTPUTS)
    x_train, x_test = x[:M], x[M:]

    def member(key):
        params = net.init(key, D, jnp.float64)
        hidden = params[:-1]
        loss = lambda ro: jnp.sum((net.apply((*hidden, ro), x_train) - y) ** 2) / (2 * M)

        def step(ro, _):
            ro = jax.tree_util.tree_map(lambda p, g: p - lr * g, ro, jax.grad(loss)(ro))
            return ro, net.apply((*hidden, ro), x_test)

        _, outs = jax.lax.scan(step, params[-1], None, length=max(STEPS))
        return outs[np.array(STEPS) - 1]

    keys = jax.random.split(jax.random.PRNGKey(7), MEMBERS)
    return np.asarray(jax.jit(jax.vmap(member))(keys))


def test_matches_an_ensemble_of_wide_networks_with_a_trained_readout():
    # Readout-only GD is GD on a linear model in the frozen features, so the finite
    # ensemble differs from the formula only by O(1/width) and by Monte Carlo error:
    # per member, the mean and the sample covariance over its OUTPUTS i.i.d. outputs
    # (one target column for all), then 4 standard errors over the MEMBERS members.
    x, k, y2 = _problem()
    y = np.repeat(y2[:, :1], OUTPUTS, axis=1)
    lr = M / np.linalg.eigvalsh(k[:M, :M])[-1]  # eta' lambda_max = 1: stable GD
    outs = _readout_gd_ensemble(x, y, lr)
    pred = nngp_gp(*_blocks(k), y[:, :1], np.array(STEPS), lr=lr, dynamics="gd")
    means = outs.mean(-1)  # (MEMBERS, T, N)
    centred = outs - means[..., None]
    covs = np.einsum("jtna,jtpa->jtnp", centred, centred) / (OUTPUTS - 1)
    ses = {}
    for name, draws, want in (("mean", means, pred.mean[..., 0]), ("cov", covs, pred.cov)):
        ses[name] = draws.std(0, ddof=1) / np.sqrt(MEMBERS)
        z = np.abs(draws.mean(0) - want) / ses[name]
        assert z.max() < 4, f"{name}: z-scores {np.round(z, 2)}"
    # Power: the trained mean moved many standard errors away from the prior's 0.
    assert np.abs(pred.mean[-1, :, 0]).max() > 20 * ses["mean"].max()


def test_bad_input_is_rejected_naming_the_argument():
    _, k, y = _problem()
    kk, k_tx, k_tt = _blocks(k)
    with pytest.raises(ValueError, match="k_train must be symmetric"):
        nngp_gp(np.triu(np.ones((M, M))), k_tx, k_tt, y, 1, lr=1.0)
    with pytest.raises(ValueError, match="k_test_train"):
        nngp_gp(kk, np.ones((N, M + 1)), k_tt, y, 1, lr=1.0)
    with pytest.raises(ValueError, match="k_train is singular"):
        nngp_gp(-np.eye(M), k_tx, k_tt, y, np.inf, lr=1.0)
    with pytest.raises(ValueError, match="lr"):
        nngp_gp(kk, k_tx, k_tt, y, 1, lr=-1.0)
