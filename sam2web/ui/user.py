"""The per-user session the page drives, imported here once for the whole page package."""

from __future__ import annotations

from ..workflow import PROMPT_MODES, QualityAgreement, UserSession

__all__ = ["PROMPT_MODES", "QualityAgreement", "UserSession"]
