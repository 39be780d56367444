"""One contract, run against every empirical NTK implementation of
``ntk_dist.models.empirical.IMPLEMENTATIONS``.

Each implementation must give Theta_hat(x1, x2) = sum_p df(x1)/dp df(x2)/dp, checked
against that sum built here from one jvp per parameter (an independent reference), must
agree with every other implementation, and must be symmetric positive semi-definite on
one input set (x2 = None); on small FC networks (three activations, depths 1-3,
k = 1 and 2 outputs) and on the catapult toy, in float64.
"""

import itertools

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from ntk_dist.models.empirical import IMPLEMENTATIONS, empirical_ntk, ntk_matrix
from ntk_dist.models.networks import CatapultToy, FCNetwork
from tests.tolerances import atol, rtol

F64 = np.float64
IN_DIM = 3
# Depth 1 and deeper, one and two outputs, a kinked and two smooth activations: the
# implementations differentiate every layer alike, so more cases compile more programs
# for no new code path (tests/models/test_empirical.py adds per-layer activations).
FC_CASES = [
    ("relu", 1, 2),
    ("tanh", 2, 1),
    ("erf", 3, 2),
]
TOY_OUTPUTS = (1, 2)


def _fc(activation, depth, k):
    net = FCNetwork.make(
        depth=depth, width=7, out_dim=k, activation=activation, sigma_w=1.3, sigma_b=0.2
    )
    return net, net.init(jax.random.PRNGKey(10 * depth + k), IN_DIM, F64)


def _toy(k):
    toy = CatapultToy(width=9, out_dim=k)
    return toy, toy.init(jax.random.PRNGKey(k), IN_DIM, F64)


MODELS = [
    pytest.param(lambda c=c: _fc(*c), id=f"fc-{c[0]}-depth{c[1]}-k{c[2]}") for c in FC_CASES
] + [pytest.param(lambda k=k: _toy(k), id=f"toy-k{k}") for k in TOY_OUTPUTS]


def _inputs(n, seed):
    return np.random.default_rng(seed).normal(size=(n, IN_DIM))


def _supports(implementation, model) -> bool:
    """``structured`` is for dense layers only (it refuses other models, by design)."""
    return implementation != "structured" or isinstance(model, FCNetwork)


def _explicit_ntk(model, params, x1, x2):
    """sum over every scalar parameter p of df(x1)/dp df(x2)/dp, one jvp per parameter."""
    flat, unravel = ravel_pytree(params)
    basis = np.eye(flat.size)
    column = lambda x, e: jax.jvp(lambda p: model.apply(unravel(p), x), (flat,), (e,))[1]
    jac = jax.jit(lambda x: jax.vmap(lambda e: column(x, e))(basis))  # (P, N, k)
    return np.einsum("pia,pjb->ijab", jac(x1), jac(x2))


def _assert_close(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == F64
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=rtol(F64), atol=rtol(F64) * scale + atol(F64))


@pytest.fixture(scope="module", params=MODELS)
def computed(request):
    """Per model: each supported implementation on (x1, x2) and on (x1, None), and the
    explicit sum on (x1, x2). Computed once per model, so each shape compiles once."""
    model, params = request.param()
    x1, x2 = _inputs(5, 0), _inputs(4, 1)
    out = {"explicit": _explicit_ntk(model, params, x1, x2), "impl": {}}
    for impl in IMPLEMENTATIONS:
        if _supports(impl, model):
            run = lambda a, b, i=impl: empirical_ntk(model, params, a, b, implementation=i)
            out["impl"][impl] = (run(x1, x2), run(x1, None))
    return out


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_equals_the_sum_over_parameters(implementation, computed):
    if implementation not in computed["impl"]:
        pytest.skip("structured needs an FCNetwork")
    cross, _ = computed["impl"][implementation]
    assert cross.shape[:2] == (5, 4)
    _assert_close(cross, computed["explicit"])


def test_every_pair_of_implementations_agrees(computed):
    found = computed["impl"]
    assert len(found) >= 3
    for a, b in itertools.combinations(found, 2):
        for got, want in zip(found[a], found[b], strict=True):
            _assert_close(got, want)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_symmetric_positive_semidefinite_on_one_input_set(implementation, computed):
    if implementation not in computed["impl"]:
        pytest.skip("structured needs an FCNetwork")
    _, alone = computed["impl"][implementation]
    k = alone.shape[-1]
    assert alone.shape == (5, 5, k, k)
    mat = np.asarray(ntk_matrix(alone))
    scale = np.abs(mat).max()
    np.testing.assert_allclose(mat, mat.T, rtol=0, atol=rtol(F64) * scale)
    eigs = np.linalg.eigvalsh((mat + mat.T) / 2)
    assert eigs.min() >= -rtol(F64) * scale * mat.shape[0], eigs
    assert eigs.max() > 0


def test_structured_refuses_models_without_dense_layers():
    toy, params = _toy(1)
    with pytest.raises(ValueError, match="needs an FCNetwork"):
        empirical_ntk(toy, params, _inputs(2, 5), implementation="structured")
