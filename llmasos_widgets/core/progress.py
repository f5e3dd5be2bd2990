"""The package's progress bar: tqdm's, made to leave a finished line in a saved notebook.

In a notebook tqdm draws an ipywidgets bar and records, once, the text of its state at the start: a notebook
saved without widget state then shows the bar stuck at 0 % on any host that cannot run widgets (GitHub,
nbviewer). This bar is displayed with a display id, and on close the display is updated, so the saved output's
text is the final line (``indexing neurons: 100%|██████████| 3681/3681 [...]``); a bar made with ``leave=False``
is replaced by that line as plain text. (The saved output thus always holds one line of the bar's text, as the
first display did: nbval, which ignores display updates, compares a 0 % line with a 100 % one, and the
sanitize file maps both to one word.) Outside a notebook it is tqdm's own text bar.
"""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm as _auto_tqdm

try:
    from tqdm.notebook import tqdm_notebook as _notebook_tqdm
except ImportError:  # pragma: no cover - tqdm always ships it; ipywidgets decides whether it is used
    _notebook_tqdm = None


class tqdm(_auto_tqdm):  # noqa: N801 - named as the class it stands in for
    """``tqdm.auto.tqdm`` whose notebook bar leaves its final state as text in the saved output.

    Examples
    --------
    >>> from llmasos_widgets.core.progress import tqdm
    >>> total = 0
    >>> for i in tqdm(range(3), disable=True):
    ...     total += i
    >>> total
    3

    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._handle: Any = None
        in_notebook = _notebook_tqdm is not None and isinstance(self, _notebook_tqdm)
        own_display = in_notebook and kwargs.get("display", True) and not kwargs.get("disable", False)
        own_display = own_display and kwargs.get("delay", 0) <= 0
        if own_display:
            kwargs["display"] = False
        super().__init__(*args, **kwargs)
        if own_display and not self.disable:
            from IPython.display import display

            self._handle = display(self.container, display_id=True)
            self.displayed = True

    def close(self) -> None:
        """Close the bar; in a notebook, replace its recorded output with the final line (or nothing)."""
        closed = self.disable
        super().close()
        handle, self._handle = getattr(self, "_handle", None), None
        if handle is None or closed:
            return
        failed = bool(self.total and self.n < self.total)
        if self.leave or failed:
            # The same widget again (a live page keeps drawing it); its text is now the final state.
            handle.update(self.container)
        else:  # the widget is closed: its final line stays as text
            handle.update({"text/plain": repr(self.container)}, raw=True)
