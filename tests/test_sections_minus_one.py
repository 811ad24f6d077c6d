"""Regression: a rubric line "-1: ..." names the score -1, not 1 (the "-" is a sign, not a bullet)."""

from submission.sections import parse_scale


def test_minus_one_scale_line_is_minus_one_not_one():
    assert parse_scale("-1: критерий неприменим\n0: плохо\n3: хорошо") == (-1, 0, 3)


def test_dash_bullet_with_space_still_strips_the_bullet():
    assert parse_scale("- 1: плохо\n- 2: хорошо") == (1, 2)
