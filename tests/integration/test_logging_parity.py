"""`self.log` must reach the trainer's metric dicts and the loggers exactly as in Lightning 2.6.

The expected data in golden_logging.json was recorded by running tests/helpers/logging_recorder.py
against a released Lightning; here the same scenarios run on fulmen.
"""

import json
from pathlib import Path

import pytest

import fulmen
from helpers.golden_compare import assert_matches_golden
from helpers.logging_recorder import LOGGING_SCENARIOS, ROUND, TORCHMETRICS_SCENARIOS, run_logging_scenario

GOLDEN = json.loads((Path(__file__).parent / "golden_logging.json").read_text())


@pytest.mark.parametrize("scenario", sorted(LOGGING_SCENARIOS))
def test_logged_values_match_lightning(scenario, tmp_path):
    if scenario in TORCHMETRICS_SCENARIOS:
        pytest.importorskip("torchmetrics")
    result = run_logging_scenario(fulmen, scenario, tmp_path)
    expected = GOLDEN[scenario]
    assert_matches_golden({field: result[field] for field in expected}, expected, ROUND)
