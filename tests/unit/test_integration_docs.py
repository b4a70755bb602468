"""docs/integration.md: the token snippets (Python, Node.js, Java) make tokens the gateway's verifier accepts, and the
Node.js webhook check agrees with the gateway's signatures. Each snippet is taken from the document as it is."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from gateway.auth import CallerTokenVerifier, ExpiredToken, TokenError
from gateway.config import Settings
from gateway.store.webhooks import sign

DOC = Path(__file__).resolve().parents[2] / "docs" / "integration.md"
SECRET = "integration-doc-secret-0123456789"


def block(language: str, marker: str) -> str:
    blocks = [b for b in re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S) if marker in b]
    assert len(blocks) == 1, f"one ```{language} block with {marker!r} in {DOC.name}"
    return blocks[0]


def verifier(**overrides: object) -> CallerTokenVerifier:
    return CallerTokenVerifier(Settings(caller_token_secret=SECRET, **overrides))


def test_the_python_snippet_mints_tokens_the_gateway_accepts() -> None:
    namespace: dict[str, object] = {}
    exec(compile(block("python", "def mint_callin_token"), str(DOC), "exec"), namespace)  # noqa: S102 - our docs
    mint = namespace["mint_callin_token"]
    token = mint(SECRET, "cust-42", "Dana Example", "dana@example.com", account_tier="gold", queue="billing")
    identity = verifier().verify(token)
    assert (identity.subject, identity.name, identity.email) == ("cust-42", "Dana Example", "dana@example.com")
    assert identity.claims == {"account_tier": "gold", "queue": "billing"}
    assert 590 <= identity.expires_at - time.time() <= 600
    with pytest.raises(TokenError):
        verifier().verify(mint("another-secret-0123456789-abcdefghij", "cust-42", "Dana"))
    with pytest.raises(ExpiredToken):
        verifier(caller_token_leeway_s=0).verify(mint(SECRET, "cust-42", "Dana", ttl_s=-5))


def run_node(source: str) -> str:
    done = subprocess.run(["node", "--input-type=module", "-e", source], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (the JS snippets need it)")
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="java is not installed (the Java snippet needs it)")


@needs_node
def test_the_node_snippet_mints_tokens_the_gateway_accepts() -> None:
    token = run_node(block("js", "function mintCallinToken") + f"""
console.log(mintCallinToken({json.dumps(SECRET)}, {{ id: 42, name: "Zoë Müller", email: undefined, tier: "gold" }}));
""")
    identity = verifier().verify(token)
    assert (identity.subject, identity.name, identity.email) == ("42", "Zoë Müller", None)
    assert identity.claims == {"account_tier": "gold"}
    assert 590 <= identity.expires_at - time.time() <= 600
    with pytest.raises(TokenError):
        verifier(caller_token_audience="someone-else").verify(token)


@needs_node
def test_the_node_webhook_check_agrees_with_the_gateways_signatures() -> None:
    body = '{"id":"d1","event":"call.ended","data":{"note":"Zoë"}}'
    now = int(time.time())
    cases = {
        "good": (sign("whsec_doc", now, body.encode()), body, True),
        "other secret": (sign("whsec_other", now, body.encode()), body, False),
        "changed body": (sign("whsec_doc", now, body.encode()), body.replace("ended", "queued"), False),
        "old": (sign("whsec_doc", now - 3600, body.encode()), body, False),
        "garbage": ("t=abc,v1=00", body, False),
        "empty": ("", body, False),
        "non-ascii": (f"t={now},v1=" + "é" * 64, body, False),
    }
    script = block("js", "function verifyCallinSignature") + "\nconst cases = " + json.dumps(
        {name: [header, text] for name, (header, text, _) in cases.items()}) + """;
const out = {};
for (const [name, [header, text]] of Object.entries(cases)) out[name] = verifyCallinSignature("whsec_doc", header, Buffer.from(text));
console.log(JSON.stringify(out));
"""
    results = json.loads(run_node(script))
    assert results == {name: expected for name, (_, _, expected) in cases.items()}


@needs_java
def test_the_java_snippet_mints_tokens_the_gateway_accepts(tmp_path: Path) -> None:
    snippet = block("java", "class CallinTokens")
    imports = "\n".join(line for line in snippet.splitlines() if line.startswith("import "))
    body = "\n".join(line for line in snippet.splitlines() if not line.startswith("import "))
    exp = int(time.time()) + 600
    claims = json.dumps({"sub": "cust-7", "aud": "callin", "exp": exp, "name": "Zoë", "account_tier": "gold"})
    # Launched as one source file: the first class is the one with main.
    source = imports + "\nclass Main { public static void main(String[] a) throws Exception { " \
                       "System.out.println(CallinTokens.mint(a[0], a[1])); } }\n" + body
    (tmp_path / "Main.java").write_text(source)
    done = subprocess.run(["java", str(tmp_path / "Main.java"), SECRET, claims], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    identity = verifier().verify(done.stdout.strip())
    assert (identity.subject, identity.name, identity.expires_at) == ("cust-7", "Zoë", exp)
    assert identity.claims == {"account_tier": "gold"}
