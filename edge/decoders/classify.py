"""``task: classify``: one output ``[B, C]`` (``[B, C, 1, 1]`` accepted) of logits or probabilities -> top-k.

Option ``softmax``: ``auto`` (default: applied when a row is not already a probability distribution),
``true`` or ``false``. Option ``output`` names the output when the model has several.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edge.decoders._common import check_batch, check_options, is_probabilities, opt_str, pick, softmax
from edge.errors import ConfigError
from edge.preprocess import Meta
from edge.results import Classifications
from edge.spec import PostprocessSpec

NAME = "classify"


def decode(outputs: Mapping[str, np.ndarray], spec: PostprocessSpec, metas: Sequence[Meta]) -> list[Classifications]:
    options = check_options(spec, NAME, ("output", "softmax"))
    mode = options.get("softmax", "auto")
    if mode not in ("auto", True, False):
        raise ConfigError(f"postprocess.options.softmax: expected auto, true or false, got {mode!r}")
    logits = pick(
        outputs,
        opt_str(options, "output", None),
        lambda a: a.ndim >= 2 and all(d == 1 for d in a.shape[2:]),
        NAME,
        "one output [B, C] of class scores",
    )
    check_batch(logits, metas, NAME, "the output")
    rows = logits.reshape(logits.shape[0], -1).astype(np.float32)
    if mode is True or (mode == "auto" and not is_probabilities(rows)):
        rows = softmax(rows)
    k = min(spec.top_k, rows.shape[1])
    results = []
    for row in rows:
        top = np.argpartition(-row, k - 1)[:k]
        top = top[np.lexsort((top, -row[top]))]  # best first, ties by class id
        results.append(Classifications(top.astype(np.int64), row[top], spec.labels))
    return results
