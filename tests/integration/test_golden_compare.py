"""The golden comparisons hold on any machine: last-digit float noise passes, behaviour changes do not.

Every recorded golden file is perturbed by one unit in the last recorded decimal place of every float
(also floats inside event strings) and must still be accepted; real differences must still be rejected.
"""

import json
import re
from pathlib import Path

import pytest

from helpers.golden_compare import mismatches, perturb
from helpers.logging_recorder import ROUND as LOGGING_PLACES
from helpers.optim_recorder import OPTIM_SCENARIOS, ROUND

HERE = Path(__file__).parent


def _golden(name):
    data = json.loads((HERE / name).read_text())
    data.pop("_source", None)
    return data


def _cases():
    """(file, scenario, decimal places the scenario's floats were rounded to)"""
    for scenario in _golden("golden_optimization.json"):
        yield "golden_optimization.json", scenario, OPTIM_SCENARIOS[scenario].get("digits", ROUND)
    for scenario in _golden("golden_logging.json"):
        yield "golden_logging.json", scenario, LOGGING_PLACES
    for scenario in _golden("golden_hook_order.json"):
        yield "golden_hook_order.json", scenario, ROUND


CASES = list(_cases())


@pytest.mark.parametrize("name, scenario, places", CASES, ids=[f"{n}:{s}" for n, s, _ in CASES])
@pytest.mark.parametrize("units", [1, -1])
def test_last_digit_noise_is_accepted(name, scenario, places, units):
    expected = _golden(name)[scenario]
    noisy = perturb(expected, places, units)
    assert mismatches(noisy, expected, places) == []


def test_perturbation_reaches_every_recorded_float():
    # Guard against a vacuous check: the perturbation must really change the floats, also inside strings.
    golden = _golden("golden_optimization.json")["accumulate_3"]
    noisy = perturb(golden, ROUND)
    assert noisy["final_params"] != golden["final_params"]
    assert "grad_norm_at_step 8.269159" in golden["events"]
    assert "grad_norm_at_step 8.26916" in noisy["events"]


def _optim(scenario="steplr_with_val"):
    return _golden("golden_optimization.json")[scenario]


def _replace_event(events, pattern, replacement):
    index = next(i for i, event in enumerate(events) if re.search(pattern, event))
    events = list(events)
    events[index] = re.sub(pattern, replacement, events[index])
    return events


@pytest.mark.parametrize("change", [
    "changed lr", "missing event", "extra event", "swapped events", "changed word", "changed step counter",
    "changed grad norm", "changed parameter", "changed final lr", "missing key", "error recorded",
])
def test_behaviour_changes_are_rejected(change):
    expected = _optim()
    actual = json.loads(json.dumps(expected))
    events = actual["events"]
    if change == "changed lr":
        actual["events"] = _replace_event(events, r"lr_at_batch_end 0\.1$", "lr_at_batch_end 0.05")
    elif change == "missing event":
        del events[events.index("zero_grad")]
    elif change == "extra event":
        actual["events"] = events[:3] + ["zero_grad"] + events[3:]
    elif change == "swapped events":
        i = events.index("backward")
        actual["events"] = events[:i - 1] + [events[i], events[i - 1]] + events[i + 1:]
    elif change == "changed word":
        actual["events"] = _replace_event(events, r"^opt_step SGD", "opt_step Adam")
    elif change == "changed step counter":
        actual["events"] = _replace_event(events, r"^global_step 1$", "global_step 2")
    elif change == "changed grad norm":
        actual["events"] = _replace_event(events, r"(grad_norm_at_step -?\d+\.\d)", r"\g<1>9")
    elif change == "changed parameter":
        actual["final_params"][0] += 1e-3
    elif change == "changed final lr":
        actual["final_lrs"][0] *= 0.5
    elif change == "missing key":
        del actual["final_current_epoch"]
    elif change == "error recorded":
        actual["error"] = "RuntimeError"
    assert actual != expected
    assert mismatches(actual, expected, ROUND)


def test_last_place_noise_in_a_low_precision_scenario_is_accepted_but_not_more():
    expected = _optim("bf16_mixed")
    places = OPTIM_SCENARIOS["bf16_mixed"]["digits"]
    assert mismatches(perturb(expected, places), expected, places) == []
    assert mismatches(perturb(expected, places, units=50), expected, places)
