"""``ntk-dist validate SPEC``: check a sweep spec and print its plan; runs nothing."""

from __future__ import annotations


def _validate(args) -> int:
    from ..spec import load_spec
    from ..sweep import plan_text

    spec = load_spec(args.spec)
    print(f"{args.spec}: valid")
    print(plan_text(spec))
    return 0


def register(sub) -> None:
    p = sub.add_parser("validate", help="check a sweep spec and print its plan")
    p.add_argument("spec", help="sweep spec, e.g. sweeps/catapult_toy.yaml")
    p.set_defaults(func=_validate)
