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


def head(value: Any, n_heads: int, model_name: str) -> int:
    """A head index of a model with ``n_heads`` heads per layer (negative counts from the end).

    Examples
    --------
    >>> head(8, 9, "smollm2-135m")
    8
    >>> head(9, 9, "smollm2-135m")
    Traceback (most recent call last):
    ...
    ValueError: head 9 is out of range: smollm2-135m has heads 0..8 (or -9..-1 from the end)

    """
    return index(value, n_heads, "head", f"{model_name} has heads")


def int_in(name: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int from ``low`` to ``high`` (a count such as ``k``); a bool is no int here.

    Examples
    --------
    >>> int_in("k", 5, 1, 50)
    5
    >>> int_in("k", 0, 1, 50)
    Traceback (most recent call last):
    ...
    ValueError: k must be an int from 1 to 50, got 0

    """
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be an int from {low} to {high}, got {value!r}")
    return int(value)


def one_token(model: Any, token: Any, what: str = "token") -> int:
    """``token`` as the id of exactly one token of ``model``: its text (``" Paris"``) or an id in the vocabulary.

    The one rule wherever a metric, a target or a contrast must be one token. A text of several tokens is
    a ValueError that shows its tokens and, where adding or removing the leading space makes one token,
    says so.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-gpt2")
    >>> one_token(model, " the") == model.tokenizer.encode(" the")[0], one_token(model, 7)
    (True, 7)
    >>> one_token(model, " the cat", "target")
    Traceback (most recent call last):
    ...
    ValueError: target ' the cat' is 2 tokens for tiny-gpt2 (' the', ' cat'), not one

    """
    vocab = len(model.tokenizer)
    if isinstance(token, int) and not isinstance(token, bool):
        if not 0 <= token < vocab:
            raise ValueError(f"{what} id {token} is out of range: {model.name}'s vocabulary has ids 0..{vocab - 1}")
        return token
    if not isinstance(token, str) or not token:
        raise ValueError(
            f"{what} must be one token's text (e.g. ' Paris', mind the leading space) or its id; got {token!r}"
        )
    ids = model.tokenizer.encode(token, add_special_tokens=False)
    if len(ids) == 1:
        return int(ids[0])
    pieces = ", ".join(repr(model.decode_token(i)) for i in ids)
    hint = ""
    for other in (" " + token, token.lstrip()):
        if other != token and other and len(model.tokenizer.encode(other, add_special_tokens=False)) == 1:
            hint = f"; {other!r} is one token"
            break
    raise ValueError(f"{what} {token!r} is {len(ids)} tokens for {model.name} ({pieces}), not one{hint}")
