"""Length units as sam2web writes them, whatever spelling a microscopy file or a user used."""

from __future__ import annotations

_MICRO = ("µm", "μm", "um", "micron", "microns", "micrometer", "micrometre", "\\u00B5m")
_LENGTH_UNITS = {"nm": "nm", "mm": "mm", "cm": "cm", "m": "m", "pm": "pm", "km": "km"}


def normalize_length_unit(unit: object) -> str | None:
    """A length unit as sam2web writes it ("µm", "nm", "mm", ...), or None for no unit,
    "pixel", or anything unrecognised. Spellings of micrometre ("um", "micron", "μm" with a
    Greek mu, ImageJ's "\\u00B5m") become "µm"."""
    if not isinstance(unit, str):
        return None
    text = unit.strip()
    if text.lower() in _MICRO or text in _MICRO:
        return "µm"
    if text.lower() in ("nanometer", "nanometre"):
        return "nm"
    if text.lower() in ("millimeter", "millimetre"):
        return "mm"
    return _LENGTH_UNITS.get(text)
