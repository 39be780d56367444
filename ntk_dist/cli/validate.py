"""``ntk-dist validate SPEC``: check a sweep spec and print its plan; runs nothing.

For a float32 spec it also runs ``ntk_dist.engine.precision.float32_check`` on one network of the
sweep (the smallest width, if it has at most ``_CHECK_MAX_PARAMS`` parameters): lambda0
and the step-0 loss in float32 against float64, reported in one line.
"""

from __future__ import annotations

_CHECK_MAX_PARAMS = 10**7


def _float32_line(spec) -> str:
    import jax
    import numpy as np

    from ntk_dist.engine.precision import float32_check
    from ntk_dist.models.networks import param_count

    width = min(spec.model.widths)
    eta = float(np.sqrt(np.prod(spec.search.eta_lambda0)))
    job = spec.job(width, eta, 0, "float32-check")
    shapes = jax.eval_shape(lambda: job.model.init(jax.random.PRNGKey(0), spec.data.dim))
    if param_count(shapes) > _CHECK_MAX_PARAMS:
        return f"  float32 check: skipped (width {width} is too large to evaluate here)"
    rep = float32_check(job)
    verdict = "ok" if rep.ok else "PRECISION LOST: use dtype float64"
    return (
        f"  float32 check (width {width}): lambda0 {rep.lambda0[0]:.7g} vs {rep.lambda0[1]:.7g} "
        f"in float64, relative error {rep.rel_error:.2g}: {verdict}"
    )


def _validate(args) -> int:
    from ntk_dist.study.spec import SweepSpec, load_spec

    spec = load_spec(args.spec)
    print(f"{args.spec}: valid")
    print(spec.describe_plan())
    if isinstance(spec, SweepSpec) and spec.training.dtype == "float32":
        print(_float32_line(spec))
    return 0


def register(sub) -> None:
    p = sub.add_parser("validate", help="check a sweep spec and print its plan")
    p.add_argument("spec", help="sweep spec, e.g. sweeps/catapult_toy.yaml")
    p.set_defaults(func=_validate)
