"""Independent NumPy forward passes the network tests compare with (docs/theory.md §1)."""


def sp_forward(layers, x, phi):
    """f(x) = h^{L+1} with h^l = x^{l-1} W^l + b^l, W and b used as stored (standard
    parameterisation); ``layers`` are dicts of NumPy arrays, ``"b"`` optional."""
    h = x
    for i, layer in enumerate(layers):
        h = h @ layer["w"] + layer.get("b", 0.0)
        if i < len(layers) - 1:
            h = phi(h)
    return h


def numpy_layers(params):
    """A network's parameters as writable NumPy copies, one dict per layer."""
    import numpy as np

    return [{name: np.array(v) for name, v in layer.items()} for layer in params]


def standard_tanh_net(widths, sigma_b, readout_sigma_w, in_dim, seed, out_dim=2):
    """An SP tanh network (sigma_w = 1.3), its float64 parameters and their NumPy copies."""
    import jax
    import jax.numpy as jnp

    from ntk_dist.models.networks import FCNetwork

    net = FCNetwork(
        widths,
        out_dim,
        "tanh",
        1.3,
        sigma_b,
        parameterization="standard",
        readout_sigma_w=readout_sigma_w,
    )
    params = net.init(jax.random.PRNGKey(seed), in_dim, jnp.float64)
    return net, params, numpy_layers(params)
