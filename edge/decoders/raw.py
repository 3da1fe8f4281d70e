"""``task: raw``: every output of the model, split per image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edge.decoders._common import check_options
from edge.preprocess import Meta
from edge.results import RawOutputs
from edge.spec import PostprocessSpec


def decode(outputs: Mapping[str, np.ndarray], spec: PostprocessSpec, metas: Sequence[Meta]) -> list[RawOutputs]:
    """One :class:`RawOutputs` per image: outputs with a leading batch axis are sliced (keeping a batch of 1)."""
    check_options(spec, "raw", ())
    b = len(metas)
    return [
        RawOutputs({k: v[i : i + 1] if v.ndim and v.shape[0] == b else v for k, v in outputs.items()}) for i in range(b)
    ]
