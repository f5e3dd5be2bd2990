"""Argument checks shared by analyses and views: one rule for layers and positions, one message."""

from __future__ import annotations

from typing import Any


def index(value: Any, n: int, what: str, owner: str) -> int:
    """``value`` as an index into ``n`` items; negative counts from the end, as in Python and TransformerLens.

    Raises a ValueError naming what was wrong and what is allowed.

    Examples
    --------
    >>> index(-1, 30, "layer", "smollm2-135m has layers")
    29
    >>> index(30, 30, "layer", "smollm2-135m has layers")
    Traceback (most recent call last):
    ...
    ValueError: layer 30 is out of range: smollm2-135m has layers 0..29 (or -30..-1 from the end)

    """
    if not isinstance(value, int) or isinstance(value, bool) or not -n <= value < n:
        raise ValueError(f"{what} {value!r} is out of range: {owner} 0..{n - 1} (or -{n}..-1 from the end)")
    return value % n


def layer(value: Any, n_layers: int, model_name: str) -> int:
    """A layer index of a model with ``n_layers`` blocks (negative counts from the end).

    Examples
    --------
    >>> layer(-2, 6, "minilm-l6")
    4

    """
    return index(value, n_layers, "layer", f"{model_name} has layers")
