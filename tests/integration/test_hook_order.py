"""The full hook-call sequence of each entry point must equal Lightning 2.6's, recorded in golden_hook_order.json."""

import json
from pathlib import Path

import pytest

import fulmen
from helpers.hook_recorder import SCENARIOS, run_scenario

GOLDEN = json.loads((Path(__file__).parent / "golden_hook_order.json").read_text())


@pytest.mark.parametrize("scenario", sorted(name for name in SCENARIOS if name in GOLDEN))
def test_hook_sequence_matches_lightning(scenario, tmp_path):
    calls = run_scenario(fulmen, scenario, tmp_path)
    assert calls == GOLDEN[scenario]
