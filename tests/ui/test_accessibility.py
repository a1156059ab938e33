"""The page checked with axe-core (WCAG 2.0/2.1 A and AA) in headless Chromium: on a fresh
page, after an upload and after a click on the frame. A serious or critical violation of
the app's own markup or CSS fails; those that Gradio's components cause themselves are
listed in ``GRADIO_OWN`` with the upstream issue. axe-core comes from the npm registry
(``scripts/run-tests.sh`` installs it into ``.cache/npm``)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from tests import synth
from tests.appserver import start_app
from tests.browser import add_object_and_click, chromium_page, wait_status

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parents[2] / ".cache/npm/node_modules/axe-core/axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

# (rule, pattern of the node's selector, the Gradio issue): violations of Gradio's own
# components, which the app's markup cannot change.
GRADIO_OWN: list[tuple[str, str, str]] = [
    # The empty state of gr.Image, gr.Video, gr.File, gr.Gallery and gr.Plot is a <div>
    # with aria-label and no role (Gradio's "Accessibility" issue, open:
    # https://github.com/gradio-app/gradio/issues/1178).
    ("aria-prohibited-attr", r"\.empty\.large\.unpadded_box", "gradio-app/gradio#1178"),
    # A gr.Image with a select event wraps its <img alt=""> in a <button>, which then has no
    # name (https://github.com/gradio-app/gradio/issues/13731, alt text of gr.Image).
    ("button-name", r"\.image-container > ", "gradio-app/gradio#13731"),
]


def _gradio_own(rule: str, target: str) -> bool:
    return any(r == rule and re.search(pat, target) for r, pat, _ in GRADIO_OWN)


@pytest.fixture(scope="module")
def app(tmp_path_factory, random_checkpoint):
    server = start_app(tmp_path_factory.mktemp("a11y-app"), random_checkpoint)
    yield server
    server.stop()


@pytest.fixture
def page():
    if not AXE.is_file():
        pytest.skip(f"no axe-core at {AXE} (scripts/run-tests.sh installs it from npm)")
    with chromium_page() as page:
        yield page


def _axe(page, when: str) -> list[str]:
    """The app's own serious or critical nodes that axe finds twice, 2 s apart: an output
    Gradio greys out while its event still runs is a passing state, not the page's markup."""
    first = _axe_once(page, when)
    if not first:
        return first
    page.wait_for_timeout(2000)
    again = set(_axe_once(page, when + " (again)"))
    return [problem for problem in first if problem in again]


def _axe_once(page, when: str) -> list[str]:
    """Run axe on the page; print the counts; the app's own serious or critical nodes."""
    if not page.evaluate("() => typeof axe !== 'undefined'"):
        page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", TAGS
    )
    by_rule, own = Counter(), []
    for v in result["violations"]:
        for node in v["nodes"]:
            target = json.dumps(node["target"])
            by_rule[(v["id"], v["impact"])] += 1
            if v["impact"] in ("serious", "critical") and not _gradio_own(v["id"], target):
                own.append(f"{v['id']} ({v['impact']}) {target}: {node['failureSummary']}")
    total = sum(by_rule.values())
    print(f"\n[axe {when}] {len(by_rule)} rule/impact pairs, {total} nodes")
    for (rule, impact), n in sorted(by_rule.items()):
        print(f"[axe {when}]   {rule} {impact}: {n} nodes")
    return own


def test_the_page_passes_axe_fresh_after_upload_and_after_a_click(app, page, tmp_path):
    page.goto(app.url)
    page.locator("#upload").wait_for()
    problems = _axe(page, "fresh page")

    frames = synth.make_frames(num_frames=6, height=120, width=160)
    clip = synth.write_video(tmp_path / "discs.mp4", frames, fps=6)
    page.locator("#upload input[type=file]").set_input_files(str(clip))
    wait_status(page, "Loaded")
    problems += _axe(page, "after upload")

    add_object_and_click(page, "red disc", synth.DEFAULT_DISCS[0])
    problems += _axe(page, "after a click")
    assert not problems, "\n".join(problems)
