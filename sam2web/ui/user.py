"""The per-user session the page drives, imported here once for the whole page package."""

from __future__ import annotations

from ..session.prompts import PROMPT_MODES
from ..session.quality import QualityAgreement
from ..session.user import UserSession

__all__ = ["PROMPT_MODES", "QualityAgreement", "UserSession"]
