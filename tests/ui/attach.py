"""What a page load shows once it is attached: the reattach handler first gives the page
its session and token (so a reload at once finds them), then what the session shows."""

from __future__ import annotations


def attached(loading) -> dict:
    """The first two updates of :func:`sam2web.ui.reattach.reattach`, as one."""
    token = next(loading)
    return {**token, **next(loading)}
