"""The architecture object: validation, defaults shared with specs, one code path for
kernels given an FC or its fields, the finite network round trip, parameter counts."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_dist
from ntk_dist import FC, CatapultToy, FCNetwork, fc_kernel, gram, kernel_regression
from ntk_dist.models.networks import param_count
from ntk_dist.study.sections import ModelSection
from ntk_dist.theory.activations import get_activation
from ntk_dist.theory.solve import kernel_matvec, nystrom_factor

FIELDS = dict(depth=3, activation="erf", sigma_w=1.5, sigma_b=0.05)


def _x(n=7, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(depth=0), "depth must be a positive integer, got 0"),
        (dict(depth=2.5), "depth must be a positive integer, got 2.5"),
        (dict(depth=True), "depth must be a positive integer, got True"),
        (dict(sigma_w=0.0), "sigma_w must be > 0, got 0.0"),
        (dict(sigma_w=float("nan")), "sigma_w must be finite"),
        (dict(sigma_b=-0.1), "sigma_b must be >= 0, got -0.1"),
        (dict(activation="swish9"), "unknown activation 'swish9'"),
        (dict(activation="leaky_relu:x"), "leaky_relu slope must be a number"),
    ],
)
def test_fc_rejects_bad_fields_with_the_promised_message(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FC(**kwargs)


def test_fc_defaults_are_the_spec_defaults():
    section = ModelSection(kind="fc", widths=[8])
    assert FC() == section.arch()
    assert (FC().depth, FC().activation.name, FC().sigma_b) == (2, "relu", 0.0)
    assert FC().sigma_w == math.sqrt(2.0) == section.sigma_w
    assert FCNetwork(widths=(4, 4)).arch == FC()
    assert FCNetwork.make(depth=2, width=4) == FCNetwork(widths=(4, 4))


def test_fc_is_frozen_hashable_and_resolves_its_activation():
    arch = FC(activation="leaky_relu:0.2")
    assert arch.activation == get_activation("leaky_relu:0.2")
    assert arch.activation_name == "leaky_relu:0.2"
    assert FC(activation=arch.activation_name) == arch
    assert hash(arch) == hash(FC(activation="leaky_relu:0.2"))
    assert (
        repr(arch)
        == "FC(depth=2, activation='leaky_relu:0.2', sigma_w=1.4142135623730951, sigma_b=0.0)"
    )
    with pytest.raises(AttributeError):
        arch.depth = 3  # type: ignore[misc]


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "leaky_relu:0.3", "tanh", jnp.sin])
def test_fc_kwargs_round_trip_and_name_named_activations(activation):
    arch = FC(depth=3, activation=activation, sigma_w=1.2, sigma_b=0.1)
    assert FC(**arch.kwargs()) == arch
    named = arch.kwargs()["activation"]
    assert isinstance(named, str) == (activation is not jnp.sin)


def test_fc_is_public():
    assert "FC" in ntk_dist.__all__ and ntk_dist.FC is FC


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_fc_kernel_takes_an_arch_or_its_fields_alike(activation):
    fields = dict(FIELDS, activation=activation)
    x, x2 = _x(), _x(5, seed=1)
    for args in [(x,), (x, x2)]:
        a, b = fc_kernel(*args, arch=FC(**fields)), fc_kernel(*args, **fields)
        np.testing.assert_array_equal(a.ntk, b.ntk)
        np.testing.assert_array_equal(a.nngp, b.nngp)
    diag = fc_kernel(x, arch=FC(**fields), diagonal=True, get="ntk").ntk
    np.testing.assert_array_equal(diag, fc_kernel(x, diagonal=True, get="ntk", **fields).ntk)
    np.testing.assert_array_equal(fc_kernel(x).ntk, fc_kernel(x, arch=FC()).ntk)


def test_arch_and_fields_together_are_refused_naming_both():
    x = _x()
    calls = [
        lambda: fc_kernel(x, arch=FC(), depth=3),
        lambda: gram(x, arch=FC(), sigma_w=1.0),
        lambda: kernel_regression(x, x[:, 0], arch=FC(), depth=3),
        lambda: kernel_matvec(x, FC(), get=("ntk",), depth=3),
        lambda: nystrom_factor(x, 3, FC(), get=("ntk",), depth=3),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"arch or as its fields, not both: got arch=FC\("):
            call()


def test_unknown_field_and_non_fc_arch_are_refused():
    with pytest.raises(TypeError, match="'dept'.*depth, activation, sigma_w, sigma_b"):
        fc_kernel(_x(), dept=3)
    with pytest.raises(ValueError, match="arch must be an FC"):
        fc_kernel(_x(), arch=dict(depth=3))
    with pytest.raises(ValueError, match="depth must be a positive integer, got 0"):
        gram(_x(), depth=0)


def test_solvers_take_an_arch_or_its_fields_alike():
    x, y = _x(20), np.sin(_x(20)[:, 0])
    a = kernel_regression(x, y, x[:3], FC(**FIELDS))
    b = kernel_regression(x, y, x[:3], **FIELDS)
    np.testing.assert_array_equal(a.mean, b.mean)
    v = np.ones((20, 1))
    np.testing.assert_array_equal(
        kernel_matvec(x, FC(**FIELDS), get=("ntk",))(v), kernel_matvec(x, get=("ntk",), **FIELDS)(v)
    )


def test_fc_network_round_trips_its_arch():
    arch = FC(**FIELDS)
    net = FCNetwork.from_arch(arch, 16, out_dim=2)
    assert net.widths == (16, 16, 16) and net.out_dim == 2 and net.arch == arch
    assert FCNetwork.make(width=16, out_dim=2, **FIELDS) == net
    assert FCNetwork.from_arch(net.arch, 16, 2) == net
    with pytest.raises(ValueError, match="width must be a positive integer, got 0"):
        FCNetwork.from_arch(arch, 0)
    with pytest.raises(ValueError, match="arch must be an FC"):
        FCNetwork.from_arch(FIELDS, 16)  # type: ignore[arg-type]


def test_spec_section_builds_the_network_of_its_arch():
    section = ModelSection(kind="fc", widths=[8], depth=3, activation="erf", sigma_w=1.5)
    assert section.build(8) == FCNetwork.from_arch(section.arch(), 8)
    assert ModelSection(kind="toy", widths=[8]).build(8) == CatapultToy(8)
    with pytest.raises(ValueError, match="has no FC architecture"):
        ModelSection(kind="toy", widths=[8]).arch()


@pytest.mark.parametrize(
    "model",
    [FCNetwork(widths=(7, 5), out_dim=2), FCNetwork.make(depth=1, width=3), CatapultToy(6, 3)],
)
@pytest.mark.parametrize("in_dim", [1, 4])
def test_parameter_count_from_shapes_equals_the_pytree_count(model, in_dim):
    params = model.init(jax.random.PRNGKey(0), in_dim)
    assert model.n_params(in_dim) == param_count(params)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), in_dim, jnp.float64))
    assert param_count(shapes) == param_count(params)


def test_init_takes_dtype_names():
    net = FCNetwork.make(depth=1, width=3)
    a, b = net.init(jax.random.PRNGKey(0), 2), net.init(jax.random.PRNGKey(0), 2, jnp.float32)
    assert a[0]["w"].dtype == jnp.float32
    np.testing.assert_array_equal(a[0]["w"], b[0]["w"])
    toy = CatapultToy(4)
    np.testing.assert_array_equal(
        toy.init(jax.random.PRNGKey(1), 2, "float32")["u"],
        toy.init(jax.random.PRNGKey(1), 2, jnp.float32)["u"],
    )
