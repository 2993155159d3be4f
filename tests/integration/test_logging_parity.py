"""`self.log` must reach the trainer's metric dicts and the loggers exactly as in Lightning 2.6.

The expected data in golden_logging.json was recorded by running tests/helpers/logging_recorder.py
against a released Lightning; here the same scenarios run on fulmen.
"""

import json
from pathlib import Path

import pytest

import fulmen
from helpers.logging_recorder import LOGGING_SCENARIOS, TORCHMETRICS_SCENARIOS, run_logging_scenario

GOLDEN = json.loads((Path(__file__).parent / "golden_logging.json").read_text())


def _approx(expected):
    """Exact structure and keys; floats compared to 1e-5 (the golden values are rounded to 6 places)."""
    if isinstance(expected, dict):
        return {key: _approx(value) for key, value in expected.items()}
    if isinstance(expected, list):
        return [_approx(value) for value in expected]
    if isinstance(expected, float):
        return pytest.approx(expected, abs=1e-5)
    return expected


@pytest.mark.parametrize("scenario", sorted(LOGGING_SCENARIOS))
def test_logged_values_match_lightning(scenario, tmp_path):
    if scenario in TORCHMETRICS_SCENARIOS:
        pytest.importorskip("torchmetrics")
    result = run_logging_scenario(fulmen, scenario, tmp_path)
    expected = GOLDEN[scenario]
    for field in expected:
        assert result[field] == _approx(expected[field]), field
