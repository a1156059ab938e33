"""The page's own CSS (:data:`PAGE_CSS`), passed to ``launch()`` wherever the app starts.

The frame viewer and the step tabs sit side by side on wide screens; Gradio's rows wrap
their columns on narrow ones, the viewer first. The rules here keep the frame in view
while one works through the steps (the viewer column sticks to the top on wide screens),
keep the seven step tabs on one line, and keep nothing wider than a phone's screen.
"""

PAGE_CSS = """
#title h1 { margin: 0 0 0.2em 0; font-size: 1.5em; }
#guide { font-size: 1.05em; padding: 0.4em 0.8em; border-left: 4px solid var(--color-accent);
  background: var(--background-fill-secondary); border-radius: 4px; }
#steps button[role="tab"] { padding-left: 0.55em; padding-right: 0.55em; }
/* The arrow keys' buttons (sam2web.ui.keys) are pressed by the script only; on a narrow
   screen Gradio's column layout would draw them. */
#key-prev, #key-next, #key-back-10, #key-forward-10 { display: none !important; }
@media (min-width: 900px) {
  #viewer { position: sticky; top: 0.5em; align-self: flex-start; }
}
@media (max-width: 700px) {
  .gradio-container { padding-left: 6px !important; padding-right: 6px !important; }
  #workspace { flex-direction: column; }
  #workspace > * { min-width: 0 !important; width: 100% !important; }
  #frame-view { height: auto !important; }
}
"""
