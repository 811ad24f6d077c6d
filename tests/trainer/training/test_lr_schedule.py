"""Learning-rate schedules: the warm-up ratio means a share of the steps on both training paths."""

from __future__ import annotations

import math

import pytest

from trainer.training.config import ConfigError, build_config
from trainer.training.judge_head import learning_rate_at


def test_a_warmup_ratio_of_one_is_refused_instead_of_becoming_one_step():
    # transformers reads warmup_steps >= 1 as a count: 1.0 meant a single warm-up step, not the whole run
    with pytest.raises(ConfigError, match="warmup_ratio"):
        build_config([{"warmup_ratio": 1.0}])


@pytest.mark.parametrize("ratio", [0.05, 0.5, 0.99])
def test_the_hf_path_warms_up_over_that_share_of_the_steps(tmp_path, ratio):
    from trainer.training.hf_trainer import training_arguments

    config = build_config([{"warmup_ratio": ratio, "max_steps": 200}])
    args = training_arguments(config, tmp_path, "fp32", 1, 1)
    assert args.get_warmup_steps(200) == math.ceil(200 * ratio)


def test_the_judge_head_schedule_warms_up_then_decays_linearly_to_zero():
    rates = [learning_rate_at(step, 100, 1.0, 10, "linear") for step in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert rates[10] == pytest.approx(1.0) and rates[55] == pytest.approx(0.5) and rates[-1] < 0.02
    assert all(a >= b for a, b in zip(rates[10:], rates[11:], strict=False))
    assert learning_rate_at(50, 100, 1.0, 0, "constant") == 1.0
