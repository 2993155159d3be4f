"""Compare a run's recorded data with a golden JSON recording, tolerant of last-digit float noise.

Goldens are recorded on one machine with floats rounded to a fixed number of decimal places; another CPU
(or BLAS build) can land a value on the other side of a rounding boundary, so exact comparison of
rounded digits fails for no behavioural reason. Here everything but floats must match exactly
(structure, keys, ints, words, event order), and floats -- standalone or inside event strings such as
``"grad_norm_at_step 8.269159"`` -- may differ by a few units in the last recorded place.
"""

import math
import re

# A float literal as ``repr(round(x, n))`` writes it: "1.5", "-0.25", "1e-07", "1.5e-05", "nan", "inf".
_FLOAT = re.compile(r"(?<![\w.])(-?(?:\d+\.\d+(?:e[-+]?\d+)?|\d+e[-+]?\d+|nan|inf))(?![\w.])")

# How many units of the last recorded decimal place two floats may differ by.
UNITS = 10
REL = 1e-5


def tolerance(places):
    """Absolute tolerance for floats rounded to ``places`` decimals."""
    return UNITS * 10.0 ** -places


def _close(actual, expected, abs_tol):
    if math.isnan(expected) or math.isnan(actual):
        return math.isnan(expected) and math.isnan(actual)
    return math.isclose(actual, expected, rel_tol=REL, abs_tol=abs_tol)


def _split(text):
    """``"lr 0.1 gs3"`` -> (["lr ", " gs3"], [0.1]): the words and the floats between them."""
    parts = _FLOAT.split(text)
    return parts[0::2], [float(part) for part in parts[1::2]]


def mismatches(actual, expected, places, path="$"):
    """Every place where ``actual`` differs from ``expected`` beyond float noise, as readable lines."""
    abs_tol = tolerance(places)
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected a dict, got {actual!r}"]
        if set(actual) != set(expected):
            return [f"{path}: keys differ: missing {sorted(set(expected) - set(actual))}, "
                    f"unexpected {sorted(set(actual) - set(expected))}"]
        return [line for key in expected for line in mismatches(actual[key], expected[key], places, f"{path}.{key}")]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected a list of {len(expected)}, got {_brief(actual)}"]
        return [line for i, (a, e) in enumerate(zip(actual, expected))
                for line in mismatches(a, e, places, f"{path}[{i}]")]
    if isinstance(expected, float):
        if isinstance(actual, bool) or not isinstance(actual, (int, float)) or not _close(actual, expected, abs_tol):
            return [f"{path}: {actual!r} != {expected!r} (tolerance {abs_tol:g})"]
        return []
    if isinstance(expected, str) and isinstance(actual, str) and _FLOAT.search(expected):
        actual_words, actual_numbers = _split(actual)
        expected_words, expected_numbers = _split(expected)
        if actual_words != expected_words or not all(
                _close(a, e, abs_tol) for a, e in zip(actual_numbers, expected_numbers)):
            return [f"{path}: {actual!r} != {expected!r} (tolerance {abs_tol:g})"]
        return []
    if actual != expected or isinstance(actual, bool) != isinstance(expected, bool):
        return [f"{path}: {actual!r} != {expected!r}"]
    return []


def assert_matches_golden(actual, expected, places):
    """Fail with every difference listed (at most 20) when ``actual`` does not match the golden data."""
    found = mismatches(actual, expected, places)
    assert not found, "differs from the golden recording:\n" + "\n".join(found[:20])


def _brief(value):
    text = repr(value)
    return text if len(text) < 200 else text[:200] + "..."


def perturb(value, places, units=1):
    """``value`` with every float (also inside strings) moved by ``units`` in its last recorded place."""
    step = units * 10.0 ** -places
    if isinstance(value, dict):
        return {key: perturb(item, places, units) for key, item in value.items()}
    if isinstance(value, list):
        return [perturb(item, places, units) for item in value]
    if isinstance(value, float):
        return value + step
    if isinstance(value, str):
        return _FLOAT.sub(lambda match: repr(round(float(match.group()) + step, places + 1)), value)
    return value
