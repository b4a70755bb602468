"""The JS package web/caller (@callin/client): package.json points at real files, the hand-written .d.ts files declare
exactly what the modules export (names and members, read from the modules themselves by Node), and TypeScript
(`tsc --strict`) accepts a usage file and refuses wrong usage, so the declarations really are checked."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "web" / "caller"
TS_VERSION = "5.9.3"  # scripts/setup.sh --test installs the same version into the same place
TS_HOME = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "callin" / f"typescript-{TS_VERSION}"
# EventTarget members every class inherits; the Error members CallinError inherits
INHERITED = {"addEventListener", "removeEventListener", "dispatchEvent", "message", "stack", "constructor"}


def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail("node is needed to read the JS modules' exports (Debian: apt-get install nodejs)")
    return path


@pytest.fixture(scope="module")
def tsc() -> Path:
    binary = Path(os.environ["CALLIN_TSC"]) if os.environ.get("CALLIN_TSC") else TS_HOME / "node_modules/.bin/tsc"
    if not binary.exists():
        npm = shutil.which("npm")
        result = subprocess.run([npm or "npm", "install", "--prefix", str(TS_HOME), "--no-audit", "--no-fund",
                                 "--silent", f"typescript@{TS_VERSION}"], capture_output=True, text=True,
                                timeout=300) if npm else None
        if result is None or result.returncode != 0 or not binary.exists():
            pytest.fail(f"TypeScript {TS_VERSION} is not installed at {TS_HOME} and npm could not install it "
                        f"({result.stderr[-300:] if result else 'no npm'}): run scripts/setup.sh --test (outside "
                        "the test namespace, which has no network) or set CALLIN_TSC")
    return binary


def runtime_api() -> dict[str, list[str]]:
    """What the modules really export, and the members of their classes (own properties of an instance, plus
    prototype methods and getters), read by Node with the few browser globals the constructors touch stubbed."""
    script = f"""
    globalThis.MediaStream = class {{ getTracks() {{ return []; }} }};
    const client = await import({json.dumps((PACKAGE / "callin-client.js").as_uri())});
    const agent = await import({json.dumps((PACKAGE / "callin-agent.js").as_uri())});
    const members = (instance) => [...new Set([...Object.keys(instance),
        ...Object.getOwnPropertyNames(Object.getPrototypeOf(instance))])];
    console.log(JSON.stringify({{
      client: Object.keys(client), agent: Object.keys(agent),
      CallinClient: members(new client.CallinClient({{ gateway: "http://gw.example", token: "t" }})),
      Signaling: members(new client.Signaling("ws://gw.example/ws/caller")),
      CallinError: members(new client.CallinError("code", "reason")),
      CallinAgentSession: members(new agent.CallinAgentSession({{ url: "ws://gw.example/ws/agent" }})),
    }}));
    """
    result = subprocess.run([node(), "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def declared_exports(dts: str) -> set[str]:
    return set(re.findall(r"^export declare (?:const|function|class) (\w+)", dts, re.M))


def declared_members(dts: str, cls: str) -> set[str]:
    body = re.search(rf"^export declare class {cls}\b[^{{]*\{{(.*?)^\}}", dts, re.M | re.S)
    assert body, f"no class {cls} in the declarations"
    names = re.findall(r"^  (?:readonly )?(\w+)\??(?:\(|:|<)", body.group(1), re.M)
    return set(names) - {"constructor"}


def test_package_json_is_an_es_module_package_whose_exports_exist():
    manifest = json.loads((PACKAGE / "package.json").read_text())
    assert manifest["name"] == "@callin/client" and manifest["type"] == "module"
    assert (PACKAGE / manifest["main"]).is_file() and (PACKAGE / manifest["types"]).is_file()
    for entry, target in manifest["exports"].items():
        paths = [target] if isinstance(target, str) else list(target.values())
        for path in paths:
            assert (PACKAGE / path).is_file(), f"exports[{entry!r}] names {path}, which does not exist"
    for name in manifest["files"]:
        assert (PACKAGE / name).is_file(), name
    assert manifest["exports"]["."]["types"] == "./callin-client.d.ts"
    assert manifest["exports"]["./agent"]["types"] == "./callin-agent.d.ts"


def test_the_declarations_name_exactly_what_the_modules_export():
    api = runtime_api()
    client_dts = (PACKAGE / "callin-client.d.ts").read_text()
    agent_dts = (PACKAGE / "callin-agent.d.ts").read_text()
    assert declared_exports(client_dts) == set(api["client"])
    assert declared_exports(agent_dts) == set(api["agent"])
    for cls, dts in (("CallinClient", client_dts), ("Signaling", client_dts), ("CallinError", client_dts),
                     ("CallinAgentSession", agent_dts)):
        runtime = set(api[cls]) - INHERITED
        declared = declared_members(dts, cls) - INHERITED
        assert runtime - declared == set(), f"{cls}: not declared in the .d.ts"
        assert declared - runtime == set(), f"{cls}: declared but not in the module"


USAGE = """
import { CallinClient, CallinError, CALL_TYPES, cleanContext, getDeviceLocation, summarizeStats,
         type CallinClientEventMap, type StatsSummary } from "@callin/client";
import { CallinAgentSession, SESSION_ENDED, agentSocketUrl, type AgentWelcome } from "@callin/client/agent";

export async function caller(): Promise<string | null> {
  const client = new CallinClient({ gateway: "https://gw.example", getToken: async () => "jwt" });
  client.addEventListener("queue", (e) => console.log(e.detail.position, e.detail.estimatedWaitS ?? "?"));
  client.addEventListener("answered", (e) => console.log(e.detail.agentName.toUpperCase()));
  client.addEventListener("ended", (e) => console.log(e.detail.reason, e.detail.durationS?.toFixed(1)));
  client.addEventListener("error", (e) => { if (e.detail.error instanceof CallinError) console.log(e.detail.error.code); });
  client.addEventListener("reconnected", (e) => console.log(e.detail.replayed, e.detail.complete));
  client.addEventListener("remotetrack", (e) => console.log(e.detail.slot === "aux", e.detail.track.kind));
  client.addEventListener("chat", (e) => console.log(e.detail.message.from.role, e.detail.message.text));
  client.addEventListener("content", (e) => client.reportContent(e.detail.content.content_id, "seen"));
  const { location } = await getDeviceLocation({ timeoutMs: 3000 });
  const queued = await client.startCall({ callType: CALL_TYPES[1], location, context: cleanContext({ screen: "x" }) });
  client.setMuted(true);
  await client.shareScreen();
  await client.sendChat({ text: "hello" });
  const stats: StatsSummary | null = await client.getStats();
  if (client.peerConnection) await summarizeStats(client.peerConnection, stats);
  const ended: CallinClientEventMap["ended"] | null = client.lastEnd;
  await client.hangup();
  await client.close();
  return typeof queued?.call_id === "string" ? queued.call_id : ended?.reason ?? null;
}

export async function agent(): Promise<void> {
  const session = new CallinAgentSession({ url: agentSocketUrl("https://gw.example/console/") });
  session.addEventListener("message", (e) => console.log(e.detail.type, e.detail.seq));
  session.addEventListener("disconnected", (e) => {
    if (e.detail.reason === "shutdown") setTimeout(() => session.connect(), (e.detail.retryAfterS ?? 5) * 1000);
    if (e.detail.error && SESSION_ENDED.includes(e.detail.error.code)) console.log("sign in again");
  });
  const welcome: AgentWelcome = await session.connect();
  console.log(welcome.agent?.status, welcome.call?.state, session.lastSeq, session.reconnecting);
  const reply = await session.request({ type: "agent.status", status: "available" });
  session.send({ type: "ice.candidate", id: session.nextId(), call_id: "c1", candidate: null });
  console.log(reply.type);
  await session.bye();
}
"""

WRONG = [
    'new CallinClient({ token: "t" }).startCall({ callType: "fax" });',
    'new CallinClient({ token: "t" }).addEventListener("queue", (e) => e.detail.agentName);',
    'new CallinAgentSession().addEventListener("disconnected", (e) => e.detail.reason === "went_away");',
    'new CallinAgentSession({ url: 42 });',
    'new CallinClient({ token: "t" }).reportContent("c1", "liked");',
]


def compile_ts(tsc: Path, tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    modules = tmp_path / "node_modules" / "@callin"
    modules.mkdir(parents=True, exist_ok=True)
    if not (modules / "client").exists():
        (modules / "client").symlink_to(PACKAGE, target_is_directory=True)
    (tmp_path / "package.json").write_text('{"type": "module"}')
    (tmp_path / "usage.ts").write_text(source)
    (tmp_path / "tsconfig.json").write_text(json.dumps({"compilerOptions": {
        "strict": True, "noEmit": True, "target": "es2022", "module": "nodenext", "moduleResolution": "nodenext",
        "lib": ["es2022", "dom"], "types": [], "skipLibCheck": False, "noUnusedLocals": False,
    }, "files": ["usage.ts"]}))
    return subprocess.run([str(tsc), "-p", str(tmp_path)], capture_output=True, text=True, timeout=180)


def test_typescript_accepts_real_usage_of_both_modules(tsc, tmp_path):
    result = compile_ts(tsc, tmp_path, USAGE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_typescript_refuses_wrong_usage(tsc, tmp_path):
    header = 'import { CallinClient } from "@callin/client";\nimport { CallinAgentSession } from "@callin/client/agent";\n'
    result = compile_ts(tsc, tmp_path, header + "\n".join(WRONG) + "\nexport {};\n")
    assert result.returncode != 0
    failing_lines = {int(n) for n in re.findall(r"usage\.ts\((\d+),\d+\): error", result.stdout)}
    assert failing_lines == set(range(3, 3 + len(WRONG))), result.stdout  # each wrong line, and nothing else
