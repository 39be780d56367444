"""Wall-time estimates: the round model, the wording, and a probe that measures."""

import pytest

from ntk_dist.study import estimate
from ntk_dist.study.spec import parse_spec


def test_a_round_lasts_its_work_over_the_slots_or_its_longest_batch():
    assert estimate.round_seconds([3.0, 3.0, 2.0], 2) == pytest.approx(4.0)
    assert estimate.round_seconds([10.0, 1.0], 4) == pytest.approx(10.0)
    assert estimate.GroupCost(2.0, 0.01).batch_seconds(300) == pytest.approx(5.0)


@pytest.mark.parametrize(
    "seconds, words", [(42.4, "about 42 s"), (200, "about 3 min 20 s"), (7380, "about 2 h 3 min")]
)
def test_wall_times_read_as_people_say_them(seconds, words):
    assert estimate.describe(seconds) == words


def test_the_dry_run_states_seconds_points_per_width_and_its_assumptions():
    spec = parse_spec(
        {
            "name": "tiny",
            "model": {"kind": "toy", "widths": [16, 32]},
            "training": {"seeds": 1, "steps": 32},
            "search": {"points_per_width": 2, "parallel": 2},
        }
    )
    plan = spec.describe_plan(timed=True)
    assert "2 points per width x 2 widths = 4 points" in plan
    line = next(x for x in plan.splitlines() if "estimated wall time" in x)
    assert "2 round(s)" in line and "task slot(s) of 1 CPU" in line and "ms/step" in line
    assert "estimated wall time" not in spec.describe_plan()  # validate: no probe
