"""Every public name is importable from ntk_dist and documented."""

import ntk_dist


def test_every_public_name_resolves_and_has_a_docstring():
    assert len(ntk_dist.__all__) == len(set(ntk_dist.__all__))
    for name in ntk_dist.__all__:
        obj = getattr(ntk_dist, name)
        if callable(obj):
            assert obj.__doc__, f"{name} has no docstring"


def test_the_entry_points_used_by_outside_checks():
    for name in ("fc_kernel", "gram", "empirical_ntk", "sharpness", "run_jobs", "run_sweep"):
        assert name in ntk_dist.__all__
