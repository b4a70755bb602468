"""`pip install .` carries the console and the caller widget: the wheel holds web/ (as the data package callin_web)
and every Python package, and an installed copy's `callin serve` serves them with no CALLIN_WEB_ROOT. A busy port
is one line from `callin demo` / `callin serve`, with how to pick another, and no traceback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.process import stop_process, wait_healthy
from tests.support.server import TEST_SECRET, free_port

ROOT = Path(__file__).resolve().parents[2]


def source_files(folder: str, pattern: str) -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / folder).rglob(pattern)
                  if p.is_file() and "__pycache__" not in p.parts)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLIN_") and k != "PYTHONPATH"}
    env.update(extra)
    return env


PACKAGE_ROOTS = ("callin_sdk", "gateway", "signaling")  # the importable packages the wheel must hold


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built offline from a copy of the source (pip wheel, no index, no build isolation)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    # bench/ too, as in a checkout: its load generator's C extension is built in place, never into the wheel
    for name in PACKAGE_ROOTS + ("web", "bench"):  # without a native module built in place: the wheel's build makes it
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
                            "--no-build-isolation", str(src), "-w", str(out)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    [whl] = out.glob("callin-*.whl")
    return whl


def test_the_wheel_holds_the_web_assets_and_every_package(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    web = source_files("web", "*")
    assert "web/caller/callin-widget.js" in web and "web/console/index.html" in web
    missing = [f for f in web if "callin_web/" + f.removeprefix("web/") not in names]
    assert not missing, f"web files not in the wheel: {missing}"
    code = [f for root in PACKAGE_ROOTS for f in source_files(root, "*.py")]
    missing = [f for f in code if f not in names]
    assert not missing, f"modules not in the wheel (add their package to pyproject.toml): {missing}"
    assert "gateway/store/migrations/script.py.mako" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "web/"))]
    if shutil.which("cc"):  # the native fast path is built with the package where there is a compiler
        assert [n for n in names if n.startswith("gateway/media/_fastpath.") and n.endswith(".so")], sorted(names)


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed into a folder of its own (its dependencies are this interpreter's)."""
    site = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                           "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return site


def test_an_installed_copy_finds_its_web_assets_without_callin_web_root(installed: Path, tmp_path: Path) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import gateway, signaling; from gateway.config import Settings; "
                               "print(gateway.__file__); print(signaling.__file__); print(Settings().web_root)"],
        cwd=tmp_path, env=clean_env(PYTHONPATH=str(installed)), capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    gateway_file, signaling_file, web_root = probe.stdout.split()
    assert Path(gateway_file).is_relative_to(installed) and Path(signaling_file).is_relative_to(installed)
    assert Path(web_root) == installed / "callin_web"


@pytest.fixture
def served(installed: Path, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    port = free_port()
    log = tmp_path / "serve.log"
    env = clean_env(PYTHONPATH=str(installed), CALLIN_PORT=str(port), CALLIN_DATA_DIR=str(tmp_path / "data"),
                    CALLIN_CALLER_TOKEN_SECRET=TEST_SECRET, CALLIN_LOG_LEVEL="warning")
    with open(log, "wb") as err:
        proc = subprocess.Popen([str(installed / "bin" / "callin"), "serve", "--media-workers", "0"], cwd=tmp_path,
                                env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        yield f"http://127.0.0.1:{port}", proc, log
    finally:
        stop_process(proc, 30)


async def test_callin_serve_of_an_installed_copy_serves_the_console_and_the_widget(served) -> None:
    base, proc, log = served
    await wait_healthy(base, proc, 60, lambda: log.read_text(errors="replace")[-3000:])
    async with aiohttp.ClientSession() as http:
        for path, source in (("/console/", "web/console/index.html"),
                             ("/static/console/console.js", "web/console/console.js"),
                             ("/caller/", "web/caller/index.html"),
                             ("/static/caller/callin-widget.js", "web/caller/callin-widget.js"),
                             ("/static/caller/callin-client.js", "web/caller/callin-client.js")):
            async with http.get(base + path) as r:
                assert r.status == 200, path
                assert await r.read() == (ROOT / source).read_bytes(), path
    assert "web_root_missing" not in log.read_text(errors="replace")


@pytest.mark.parametrize("command", ["demo", "serve"])
@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_busy_port_is_one_line_and_says_how_to_pick_another(command: str, how: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_env(PYTHONPATH=str(ROOT), CALLIN_DATA_DIR=str(tmp_path / "data"),
                        CALLIN_CALLER_TOKEN_SECRET=TEST_SECRET)
        args = [sys.executable, "-m", "signaling.cli", command]
        if how == "flag":
            args += ["--port", str(port)]
        else:
            env["CALLIN_PORT"] = str(port)
        done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""  # no banner: nothing started
    lines = done.stderr.strip().splitlines()
    assert lines == [f"callin: port {port} is already in use on 127.0.0.1 (another callin, or another server); "
                     "pick another with --port N or CALLIN_PORT=N (make demo: CALLIN_PORT=9000 make demo)"], done.stderr
    assert not (tmp_path / "data").exists()  # not even the database was created
