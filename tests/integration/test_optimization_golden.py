"""Optimizer, scheduler, accumulation, clipping and manual-optimization behaviour must equal Lightning 2.6's.

golden_optimization.json was recorded by running tests/helpers/optim_recorder.py against a released
Lightning: every optimizer/scheduler step, zero_grad, learning rate, global_step and final parameter.
Floats (also those inside event strings) are compared with a tolerance of a few units in their last
recorded place, so the test holds on any CPU.
"""

import json
from pathlib import Path

import pytest

import fulmen
from helpers.golden_compare import assert_matches_golden
from helpers.optim_recorder import OPTIM_SCENARIOS, ROUND, run_optim_scenario

GOLDEN = json.loads((Path(__file__).parent / "golden_optimization.json").read_text())


@pytest.mark.parametrize("scenario", sorted(OPTIM_SCENARIOS))
def test_optimization_matches_lightning(scenario, tmp_path):
    places = OPTIM_SCENARIOS[scenario].get("digits", ROUND)
    assert_matches_golden(run_optim_scenario(fulmen, scenario, tmp_path), GOLDEN[scenario], places)
