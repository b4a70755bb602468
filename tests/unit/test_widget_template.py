"""The caller widget's markup (web/caller/callin-widget.template.js, one part per area and state) has what the widget
looks up: every class, data-action and id in callin-widget.js's selectors is in the rendered markup or in markup the
widget builds itself (chat messages, shared cards). Node renders the template; the browser tests prove the behaviour."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CALLER = ROOT / "web" / "caller"


@pytest.fixture(scope="module")
def markup() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed to render the widget's template (Debian: apt-get install nodejs)")
    script = f"""
    const {{ widgetMarkup }} = await import({json.dumps((CALLER / "callin-widget.template.js").as_uri())});
    console.log(JSON.stringify([widgetMarkup({{ floating: true }}), widgetMarkup({{ floating: false, style: "<style></style>" }})]));
    """
    result = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    floating, inline = json.loads(result.stdout)
    assert 'class="launcher floating"' in floating and 'class="launcher "' in inline and inline.startswith("<style>")
    return floating


def test_the_markup_has_one_view_per_state_and_everything_the_widget_looks_up(markup: str) -> None:
    views = re.findall(r'class="view[^"]*" data-view="(\w+)"', markup)
    assert views == ["loading", "choose", "permission", "call", "closed", "callback", "rejoin", "ended", "error"]
    widget = (CALLER / "callin-widget.js").read_text()
    built = widget  # markup the widget builds itself (its template strings, classNames)
    classes = {c for attr in re.findall(r'class="([^"$]*)', markup + built) for c in attr.split()}
    classes |= set(re.findall(r'className = [`"]([\w-]+)', built)) | set(re.findall(r'classList\.(?:add|toggle)\("([\w-]+)"', built))
    actions = set(re.findall(r'data-action="([\w-]+)"', markup + built))
    ids = set(re.findall(r'\bid="([\w-]+)"', markup))
    selectors = re.findall(r'(?:querySelector(?:All)?|\$)\((["\'])(.+?)\1\)', widget)
    assert len(selectors) > 60  # the pattern still finds the widget's lookups
    for _, selector in selectors:
        for name in re.findall(r"\.([\w-]+)", selector):
            assert name in classes, f"the widget looks up .{name} ({selector!r}), which no markup has"
        for action in re.findall(r'data-action="([\w-]+)"', selector):
            assert action in actions, f"the widget looks up data-action={action!r}, which no markup has"
        for element_id in re.findall(r"#([\w-]+)", selector):
            assert element_id in ids, f"the widget looks up #{element_id}, which the markup lacks"
