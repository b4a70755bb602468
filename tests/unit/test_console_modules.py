"""The agent console's ES modules (web/console: lib/ helpers, views/ one per view, console.js the entry) fit together:
every module links (each named import exists), every view factory gives a `mount` (its controls), every cross-view call
(`views.<view>.<fn>`) names something that view really returns, and every element id the scripts look up is on the
page. Node reads the modules themselves; the browser tests prove the behaviour."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "web" / "console"
# Element ids the console creates itself (audio elements, the contact history inside the caller's card).
CREATED_IDS = {"remote-audio", "remote-audio-2", "sv-audio-agent", "sv-audio-caller"}


def sources() -> list[Path]:
    return sorted([CONSOLE / "console.js", *(CONSOLE / "lib").glob("*.js"), *(CONSOLE / "views").glob("*.js")])


@pytest.fixture(scope="module")
def views() -> dict[str, list[str]]:
    """What each view factory returns, read by Node: the modules are imported (which links every named import) and
    each factory is called with a bare app context, with the one browser global a factory reads (localStorage)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed to read the console's modules (Debian: apt-get install nodejs)")
    modules = [p.as_uri() for p in sources() if p.name != "console.js"]  # the entry starts the page
    script = f"""
    globalThis.localStorage = {{ getItem: () => null, setItem: () => {{}} }};
    const out = {{}};
    for (const url of {json.dumps(modules)}) {{
      const module = await import(url);
      for (const [name, factory] of Object.entries(module)) {{
        if (!/^create[A-Z]/.test(name) || !url.includes("/views/")) continue;
        const view = factory({{ store: {{}}, state: {{}}, ringer: {{}}, views: {{}} }});
        out[name.slice(6).toLowerCase()] = Object.keys(view);
      }}
    }}
    console.log(JSON.stringify(out));
    """
    result = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_view_module_links_and_mounts(views: dict[str, list[str]]) -> None:
    files = sorted(p.stem for p in (CONSOLE / "views").glob("*.js"))
    assert sorted(views) == files, "one factory createX per view module, named after its file"
    for name, members in views.items():  # the socket's message router has no controls of its own
        assert "mount" in members or name == "messages", f"views/{name}.js gives no mount()"
    entry = (CONSOLE / "console.js").read_text()
    for name in files:  # the entry creates every view
        assert re.search(rf'import \{{ create{name.capitalize()} \}} from "\./views/{name}\.js";', entry), name
        assert f"{name}: create{name.capitalize()}(app)," in entry, name


def test_every_cross_view_call_names_what_that_view_returns(views: dict[str, list[str]]) -> None:
    for path in sources():
        for view, member in re.findall(r"\bviews\.(\w+)\.(\w+)", path.read_text()):
            assert view in views, f"{path.name}: views.{view} does not exist"
            assert member in views[view], f"{path.name}: views.{view}.{member} is not something views/{view}.js returns"


def test_every_id_the_scripts_look_up_is_on_the_page() -> None:
    page = (CONSOLE / "index.html").read_text()
    on_page = set(re.findall(r'\bid="([\w-]+)"', page))
    code = "\n".join(p.read_text() for p in sources())
    made = set(re.findall(r'\bid="([\w-]+)"', code)) | set(re.findall(r'\.id = "([\w-]+)"', code)) | CREATED_IDS
    looked_up = set(re.findall(r'\$\("([\w-]+)"\)', code)) | set(re.findall(r'getElementById\("([\w-]+)"\)', code))
    looked_up |= {f"view-{v}" for v in re.search(r"const VIEWS = \[([^\]]*)\]", code).group(1).replace('"', "").split(", ")}
    looked_up |= {f"dev-{kind}" for kind in ("mic", "camera", "speaker")}
    missing = sorted(looked_up - on_page - made)
    assert not missing, f"the scripts look up ids that are nowhere: {missing}"
    assert len(looked_up) > 100  # the patterns above still find the lookups
