"""The Explorer's panels, each registered by its own view in one line: ``@panel(...)`` on the view class.

A registration says the panel's name (its ``js/<name>/`` front-end folder too), its title, which parts of
the shared selection it follows, which of the Explorer's keyword arguments it reads, and where it goes.
The Explorer builds every registered panel with the view's :meth:`~.base.ViewBase.for_explorer`; the page
mounts the front-end of the same name (build.mjs bundles every view folder into the Explorer's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .base import ViewBase

SELECTION = ("selected_token", "selected_layer", "selected_head")
View = TypeVar("View", bound="type[ViewBase]")


@dataclass(frozen=True)
class Panel:
    """How a view sits in the Explorer."""

    name: str
    title: str
    follows: tuple[str, ...]  # the parts of the Explorer's selection it follows
    inputs: tuple[str, ...]  # the Explorer keywords its view reads (for_explorer's keyword arguments)
    order: float  # panels go in this order by default
    view: type[ViewBase]


_PANELS: dict[str, Panel] = {}


def panel(
    name: str, *, title: str, follows: tuple[str, ...], inputs: tuple[str, ...] = (), order: float
) -> Callable[[View], View]:
    """Register the decorated view class as the Explorer's panel ``name``.

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> registered_panels()["lens"].view is lw.LensView, registered_panels()["neurons"].follows
    (True, ('selected_token', 'selected_layer'))

    """
    bad = [s for s in follows if s not in SELECTION]
    if bad or not follows:
        raise ValueError(f"a panel follows some of {', '.join(SELECTION)}; got {follows}")

    def register(cls: View) -> View:
        found = _PANELS.get(name)
        if found is not None and found.view.__qualname__ != cls.__qualname__:
            raise ValueError(f"the panel {name!r} is already {found.view.__name__}'s")
        _PANELS[name] = Panel(name, title, tuple(follows), tuple(inputs), order, cls)
        return cls

    return register


def registered_panels() -> dict[str, Panel]:
    """Every registered panel by name, in order.

    Examples
    --------
    >>> list(registered_panels())
    ['tokens', 'attention', 'saliency', 'neurons', 'lens', 'concepts', 'features', 'evaluation']

    """
    return {p.name: p for p in sorted(_PANELS.values(), key=lambda p: p.order)}
