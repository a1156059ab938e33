"""What the page needs to be readable by everyone (WCAG 2.1 A/AA): the CSS that gives the
page's text and buttons a contrast of at least 4.5:1, passed to ``launch()`` (Gradio 6
takes css there; ``sam2web.ui.wiring.launch`` passes it for ``app.py`` and the tests)."""

from __future__ import annotations

# The default theme's subdued grey (#bbbbc2 on white, 1.9:1) is used for the info lines
# under controls, the slider's ends, "- or -" of the upload and the footer; its orange
# primary (white on #f97316, 2.8:1) and red stop buttons (white on #ef4444, 3.8:1) are too
# light for white text. Each colour below is at least 4.5:1 against its background.
A11Y_CSS = """
:root, .gradio-container {
  --body-text-color-subdued: #4b5563;
  --button-primary-background-fill: #c2410c;
  --button-primary-background-fill-hover: #9a3412;
  --button-primary-border-color: #c2410c;
  --button-cancel-background-fill: #b91c1c;
  --button-cancel-background-fill-hover: #991b1b;
  --button-cancel-border-color: #b91c1c;
}
.gradio-container .info-text, .gradio-container .subdued,
.gradio-container .min_value, .gradio-container .max_value,
.gradio-container .or, footer, footer a, footer button { color: #4b5563 !important; }
.gradio-container button.primary, .gradio-container button.primary:hover {
  background: #c2410c !important; color: #ffffff !important;
}
.gradio-container button.stop, .gradio-container button.stop:hover {
  background: #b91c1c !important; color: #ffffff !important;
}
/* The status lines are short text, not regions to scroll: a region that scrolls needs
   keyboard focus (WCAG 2.1.1), so they grow with their text instead. */
#model-status, #video-facts, #status, #guide, #example-hint { overflow: visible !important; max-height: none !important; }
"""
