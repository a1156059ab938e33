"""Keyboard shortcuts: the script the page runs (:data:`KEYS_JS`, given to ``launch(js=...)``),
the help line that lists them (:data:`KEYS_HELP`) and the hidden buttons the frame keys press
(:func:`build_keys`; their handlers are in :mod:`.keys_events`).

Every shortcut presses a control of the page, so a key does exactly what the control does:
P / N / B pick the click mode in ``#click-mode``, Z presses ``#undo``, T ``#track`` and Esc
``#cancel``. The arrow keys press hidden buttons whose handlers move the frame slider on the
server (clamped to the video), and the slider's own change event then shows the frame, as
when it is dragged; setting the slider's value from the script instead would depend on how
Gradio's slider listens to its input element, which is not part of Gradio's interface.
No key acts while a text box, text area, number or select has the focus (typing stays
typing), with Ctrl, Alt or Meta held (the browser's own shortcuts), nor an arrow key on a
focused slider or radio button, which moves that control itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import gradio as gr

from .user import PROMPT_MODES

KEYS_HELP = (
    "**Keys:** ←/→ one frame, Shift+←/→ ten frames · **P** positive point, **N** negative "
    "point, **B** box · **Z** undo · **T** track · **Esc** cancel (not while typing in a field)"
)

# The hidden buttons of the frame keys: element id -> frames moved.
STEP_BUTTONS = {"key-prev": -1, "key-next": 1, "key-back-10": -10, "key-forward-10": 10}
MODE_KEYS = {"p": "positive", "n": "negative", "b": "box"}
BUTTON_KEYS = {"z": "undo", "t": "track", "Escape": "cancel"}
# The step (tab id of sam2web.ui.layout.STEP_LABELS) holding each control a key presses:
# a key opens it first when another step is open (a closed tab's controls are not drawn).
STEP_OF = {"undo": "mark", "click-mode": "mark", "track": "track", "cancel": "track"}

_SCRIPT = """
() => {
  if (window.sam2webKeys) return;
  window.sam2webKeys = true;
  const MODES = __MODES__;
  const MODE_ORDER = __MODE_ORDER__;
  const BUTTONS = __BUTTONS__;
  const TEXT_INPUTS = new Set(["text", "search", "number", "email", "url", "tel",
                               "password", "date", "time", "datetime-local", "month", "week"]);
  const STEP_OF = __STEP_OF__;
  const drawn = (el) => el && el.getClientRects().length > 0;
  // Run act() on the control with this id; when its step is closed, open it first.
  const inStep = (id, act) => {
    const el = document.getElementById(id);
    if (drawn(el) || (el && !STEP_OF[id])) return act();  // the frame keys' buttons are hidden
    const tab = STEP_OF[id] && document.getElementById("step-" + STEP_OF[id] + "-button");
    if (!drawn(tab) || tab.disabled) return false;
    tab.click();
    let tries = 0;
    const retry = () => {
      if (drawn(document.getElementById(id))) act();
      else if (++tries < 20) setTimeout(retry, 50);
    };
    setTimeout(retry, 50);
    return true;
  };
  const press = (id) => inStep(id, () => {
    const el = document.getElementById(id);
    const button = el && (el.tagName === "BUTTON" ? el : el.querySelector("button"));
    if (!button || button.disabled) return false;
    button.click();
    return true;
  });
  const chooseMode = (mode) => inStep("click-mode", () => {
    const radios = [...document.querySelectorAll("#click-mode input[type=radio]")];
    const radio = radios.find((r) => r.value === mode) || radios[MODE_ORDER.indexOf(mode)];
    if (!radio) return false;
    radio.click();
    return true;
  });
  const typing = (el) => {
    if (!el || !el.tagName) return false;
    if (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
    return el.tagName === "INPUT" && TEXT_INPUTS.has((el.type || "text").toLowerCase());
  };
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing) return;
    if (event.ctrlKey || event.altKey || event.metaKey) return;
    const target = event.target;
    if (typing(target)) return;
    let done = false;
    if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
      const type = target && target.tagName === "INPUT" ? target.type : "";
      if (type === "range" || type === "radio") return;  // the control moves itself
      const forward = event.key === "ArrowRight";
      const id = event.shiftKey ? (forward ? "key-forward-10" : "key-back-10")
                                : (forward ? "key-next" : "key-prev");
      done = press(id);
    } else if (event.key === "Escape") {
      done = press(BUTTONS["Escape"]);
    } else if (event.key.length === 1) {
      const key = event.key.toLowerCase();
      if (key in MODES) done = chooseMode(MODES[key]);
      else if (key in BUTTONS) done = press(BUTTONS[key]);
    }
    if (done) event.preventDefault();
  });
}
"""

KEYS_JS = (
    _SCRIPT.replace("__MODES__", json.dumps(MODE_KEYS))
    .replace("__MODE_ORDER__", json.dumps(list(PROMPT_MODES)))
    .replace("__BUTTONS__", json.dumps(BUTTON_KEYS))
    .replace("__STEP_OF__", json.dumps(STEP_OF))
)


@dataclass(frozen=True)
class KeysPanel:
    """The help line and the hidden buttons the arrow keys press."""

    help: gr.Markdown
    steps: dict[int, gr.Button]  # frames moved -> its hidden button


def build_keys() -> KeysPanel:
    """The help line, and the frame keys' buttons (in the page, not shown)."""
    help_line = gr.Markdown(KEYS_HELP, elem_id="key-help")
    steps = {
        delta: gr.Button(f"{delta:+d} frames", visible="hidden", elem_id=elem_id)
        for elem_id, delta in STEP_BUTTONS.items()
    }
    return KeysPanel(help_line, steps)
