"""JSON for checkpointed governor state: what ``transformers``' ``ExportableState`` puts in ``trainer_state.json``.

The Trainer writes ``trainer_state.json`` with ``json.dumps``, which would write a non-finite float
as the non-standard ``NaN`` / ``Infinity``. ``to_json`` writes those as ``{"float": "nan"}`` (and
``inf``, ``-inf``) so the file stays strict JSON; ``from_json`` reads them back. Nothing is pickled.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

FORMAT = 1  # of the saved state dicts (GovernorCallback, GovernedTrainerState)


def to_json(x: Any) -> Any:
    """``x`` with numpy scalars/arrays as Python values and non-finite floats as ``{"float": "nan"}``."""
    if isinstance(x, dict):
        return {str(k): to_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_json(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_json(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else {"float": repr(x)}
    return x


def from_json(x: Any) -> Any:
    """The inverse of ``to_json`` (lists stay lists)."""
    if isinstance(x, dict):
        if set(x) == {"float"} and x["float"] in ("nan", "inf", "-inf"):
            return float(x["float"])
        return {k: from_json(v) for k, v in x.items()}
    if isinstance(x, list):
        return [from_json(v) for v in x]
    return x
