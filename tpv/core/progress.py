"""The one progress bar every long loop of tpv shows (tqdm, imported only when a bar is shown)."""

from __future__ import annotations

from collections.abc import Iterable


def progress_bar(
    items: Iterable, enabled: bool, desc: str, *, unit: str = "it", leave: bool = False, total: int | None = None
) -> Iterable:
    """``items`` unchanged when ``enabled`` is false, else wrapped in a tqdm bar named ``desc``.

    Example:
        >>> list(progress_bar(range(3), False, "quiet"))
        [0, 1, 2]
    """
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit=unit, leave=leave, total=total)
