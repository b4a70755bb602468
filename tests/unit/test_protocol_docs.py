"""docs/protocol.md against the protocol's models and its exported JSON Schema: every JSON example of a message is
valid for the socket it is written for, every message type of the schema (caller -> server, agent -> server,
server -> client) has its section, a field table that lists exactly its fields, and at least one valid example."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from pydantic import TypeAdapter, ValidationError

from signaling import protocol as p

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

CALLER = "caller_to_server"
AGENT = "agent_to_server"
SERVER = "server_to_client"
DIRECTIONS: dict[str, tuple[str, TypeAdapter[Any]]] = {  # direction: (its section in the docs, its adapter)
    CALLER: ("Caller → server messages", p.caller_adapter),
    AGENT: ("Agent → server messages", p.agent_adapter),
    SERVER: ("Server → client messages", p.server_adapter),
}
SECTION_DIRECTION = {section: direction for direction, (section, _) in DIRECTIONS.items()}


@dataclass
class Block:
    line: int  # where the block opens, for messages
    h2: str
    h3: str | None
    text: str


@dataclass
class Heading:
    line: int
    h2: str
    title: str
    tables: list[list[str]] = field(default_factory=list)  # the first cells of each "| Field |" table's rows

    def types(self) -> set[str]:
        """`### call.hold, call.resume` names two messages; `### sdp.offer (caller)` one."""
        return {name.strip() for name in re.sub(r"\s*\(.*\)$", "", self.title).split(",")}


@dataclass
class Doc:
    blocks: list[Block]
    headings: list[Heading]
    lines: list[str]
    transcript: list[tuple[int, str, str]]  # (line, "→" or "←", the message) of recorded exchanges


def read_doc() -> Doc:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    headings: list[Heading] = []
    transcript: list[tuple[int, str, str]] = []
    h2, heading = "", None
    fence: tuple[int, str, list[str]] | None = None  # (first line, language, lines)
    in_table = False
    in_object = False  # under a "#### X object" subsection: its tables describe the object, not the message
    for number, line in enumerate(lines, 1):
        if fence is not None:
            if line.startswith("```"):
                if fence[1] == "json":
                    blocks.append(Block(fence[0], h2, heading.title if heading else None, "\n".join(fence[2])))
                fence = None
            else:
                fence[2].append(line)
                if line[:2] in ("→ ", "← "):
                    transcript.append((number, line[0], line[2:]))
            continue
        if line.startswith("```"):
            fence = (number, line[3:].strip(), [])
        elif line.startswith("## "):
            h2, heading, in_object = line[3:].strip(), None, False
        elif line.startswith("### "):
            heading, in_object = Heading(number, h2, line[4:].strip()), False
            headings.append(heading)
        elif line.startswith("#### "):
            in_object = True
        elif heading is not None and not in_object and line.startswith("| Field |"):
            heading.tables.append([])
            in_table = True
            continue
        if in_table:
            if not line.startswith("|"):
                in_table = False
            elif not line.startswith("|---") and heading is not None:
                heading.tables[-1].append(line.split("|")[1].strip())
    assert fence is None, f"a fence opened at line {fence[0]} is never closed"
    return Doc(blocks, headings, lines, transcript)


def messages_of(block: Block) -> list[Any]:
    """A block holds one JSON value, or one per line (several messages in a row)."""
    try:
        return [json.loads(block.text)]
    except ValueError:
        pass
    try:
        return [json.loads(line) for line in block.text.splitlines() if line.strip()]
    except ValueError as exc:
        raise AssertionError(f"docs/protocol.md:{block.line}: a ```json block that is not JSON: {exc}") from None


SCHEMA = p.json_schema()


def schema_types(direction: str) -> set[str]:
    return set(SCHEMA[direction]["discriminator"]["mapping"])


def schema_fields(direction: str, kind: str) -> set[str]:
    part = SCHEMA[direction]
    ref = part["discriminator"]["mapping"][kind]
    return set(part["$defs"][ref.rsplit("/", 1)[1]]["properties"])


DOC_ = read_doc()
EXAMPLES = [(block, message) for block in DOC_.blocks for message in messages_of(block)
            if isinstance(message, dict) and "type" in message]
VALIDATORS = {direction: jsonschema_rs.validator_for(SCHEMA[direction]) for direction in DIRECTIONS}


def valid(direction: str, message: dict[str, Any]) -> str | None:
    """None if the message is valid for the direction, by the pydantic models and by the exported JSON Schema;
    else why not."""
    try:
        DIRECTIONS[direction][1].validate_python(message)
    except ValidationError as exc:
        return f"models: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}"
    errors = [error.message for error in VALIDATORS[direction].iter_errors(message)]
    return f"JSON Schema: {errors[0]}" if errors else None


def test_server_examples_write_every_field():
    """The server always writes every field of its messages (`null` for no value): so do the examples (`seq`
    aside: examples of events may leave it out)."""
    for block, message in EXAMPLES:
        if SECTION_DIRECTION.get(block.h2, SERVER) == SERVER and message["type"] in schema_types(SERVER):
            missing = schema_fields(SERVER, message["type"]) - set(message) - {"seq"}
            assert not missing, f"docs/protocol.md:{block.line} ({message['type']}): no {sorted(missing)}"


def test_recorded_exchanges_are_valid_messages():
    """The lines of a recorded call (→ sent by the client, ← by the server) are messages, valid and, from the
    server, complete."""
    assert len(DOC_.transcript) > 10
    for line, arrow, text in DOC_.transcript:
        message = json.loads(text)
        if arrow == "←":
            assert (why := valid(SERVER, message)) is None, f"docs/protocol.md:{line}: {why}"
            assert not schema_fields(SERVER, message["type"]) - set(message) - {"seq"}, f"docs/protocol.md:{line}"
        else:
            whys = [valid(d, message) for d in (CALLER, AGENT) if message["type"] in schema_types(d)]
            assert None in whys, f"docs/protocol.md:{line}: {whys}"


def test_the_doc_has_examples_and_every_json_block_parses():
    assert len(EXAMPLES) > 50
    assert all(messages_of(block) for block in DOC_.blocks)


@pytest.mark.parametrize("block, message", EXAMPLES,
                         ids=[f"line{block.line}-{message['type']}" for block, message in EXAMPLES])
def test_every_example_is_valid_for_its_socket(block, message):
    """An example in a direction's section is valid for that direction; elsewhere (call flows, resume) for some
    direction that has its type."""
    where = f"docs/protocol.md:{block.line} ({block.h3 or block.h2})"
    direction = SECTION_DIRECTION.get(block.h2)
    if direction is not None:
        assert message["type"] in schema_types(direction), f"{where}: {message['type']} is not a {direction} type"
        assert (why := valid(direction, message)) is None, f"{where}: {why}"
        if block.h3 is not None:
            heading = next(h for h in DOC_.headings if h.h2 == block.h2 and h.title == block.h3)
            assert message["type"] in heading.types(), f"{where}: a {message['type']} example under {block.h3}"
    else:
        candidates = [d for d in DIRECTIONS if message["type"] in schema_types(d)]
        assert candidates, f"{where}: unknown message type {message['type']}"
        whys = [valid(d, message) for d in candidates]
        assert None in whys, f"{where}: {whys}"


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_every_message_of_the_schema_has_its_section_and_a_valid_example(direction):
    section = DIRECTIONS[direction][0]
    documented = set().union(*(h.types() for h in DOC_.headings if h.h2 == section))
    types = schema_types(direction)
    assert types - documented == set(), f"no ### section in '{section}' for these messages"
    assert documented - types == set(), f"sections in '{section}' for messages the schema does not have"
    examples = {message["type"] for _, message in EXAMPLES
                if message["type"] in types and valid(direction, message) is None}
    assert types - examples == set(), f"no valid ```json example of these {direction} messages"


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_every_field_table_lists_exactly_the_fields_of_its_messages(direction):
    """`seq` (every event's number) is described once, under Message conventions; a table may list it. A message
    that both roles send the same way (`ping`, `chat.send`) may have its table in the caller's section only."""
    section = DIRECTIONS[direction][0]
    types = schema_types(direction)
    for heading in (h for h in DOC_.headings if h.h2 == section and h.tables):
        named = {cell.strip("`") for cell in heading.tables[0]}
        expected = set().union(*(schema_fields(direction, kind) for kind in heading.types()))
        assert named - {"seq"} == expected - {"seq"}, (
            f"docs/protocol.md:{heading.line} ({heading.title}): the table lists {sorted(named - expected)} "
            f"that the message does not have and lacks {sorted(expected - named - {'seq'})}")
    tabled = set()
    for kind in types:
        for heading in DOC_.headings:
            other = SECTION_DIRECTION.get(heading.h2)
            if other is None or not heading.tables or kind not in heading.types() or kind not in schema_types(other):
                continue
            if {cell.strip("`") for cell in heading.tables[0]} - {"seq"} >= schema_fields(direction, kind) - {"seq"}:
                tabled.add(kind)
    assert types - tabled == set(), f"these {direction} messages have no field table"


def _listed(lines: list[str], opening: str) -> set[str]:
    """The backticked names of the paragraph that starts with `opening`, up to its 'Any other'."""
    start = next(i for i, line in enumerate(lines) if line.startswith(opening))
    text = " ".join(lines[start:start + 6])
    text = text[len(opening):text.index("Any other")]
    return set(re.findall(r"`([a-z_.]+)`", text))


def test_the_lists_of_accepted_messages_are_the_schema_s():
    assert _listed(DOC_.lines, "Accepted on `/ws/caller`:") == schema_types(CALLER)
    assert _listed(DOC_.lines, "Accepted on `/ws/agent`:") == schema_types(AGENT)


def test_the_server_message_table_names_every_server_message():
    start = DOC_.lines.index("| type | to | kind | caused by |")
    rows = []
    for line in DOC_.lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1])
    assert set(re.findall(r"`([a-z_.]+)`", " ".join(rows))) == schema_types(SERVER)


def test_each_part_of_the_schema_is_a_schema_of_its_own():
    """As the JSON Schema section says: each direction validates with its part as the root schema."""
    for direction in DIRECTIONS:
        validator = jsonschema_rs.validator_for(SCHEMA[direction])
        assert not validator.is_valid({"type": "no.such.message", "id": "r1"})
    assert VALIDATORS[CALLER].is_valid({"type": "ping", "id": "r1"})
    assert not VALIDATORS[CALLER].is_valid({"type": "call.accept", "id": "r1", "call_id": "c1"})
    assert VALIDATORS[AGENT].is_valid({"type": "call.accept", "id": "r1", "call_id": "c1"})
    assert VALIDATORS[SERVER].is_valid({"type": "pong", "id": "r1"})


SOURCES = [Path(__file__).resolve().parents[2] / part for part in ("gateway", "signaling")]
CODE = re.compile(r"""\bcode\s*=\s*["']([a-z][a-z0-9_]*)["']""")


def codes_in_the_code() -> dict[str, str]:
    """Every error code the server can raise: `code = "..."` of an error class and `code="..."` of a raise, in
    gateway/ and signaling/ (code -> the first file that has it)."""
    found: dict[str, str] = {}
    for root in SOURCES:
        for path in sorted(root.rglob("*.py")):
            for code in CODE.findall(path.read_text(encoding="utf-8")):
                found.setdefault(code, str(path.relative_to(root.parent)))
    return found


def test_every_error_code_of_the_code_is_in_the_docs():
    codes = codes_in_the_code()
    assert len(codes) > 80 and {"invalid_message", "session_replaced", "bad_candidate"} <= set(codes)
    text = DOC.read_text(encoding="utf-8")
    missing = {code: where for code, where in codes.items() if f"`{code}`" not in text}
    assert not missing, f"error codes raised in the code but not in docs/protocol.md: {missing}"


def test_every_websocket_error_code_has_a_row_in_the_error_table():
    """The codes named after 'Errors:' in the messages' sections are rows of the WebSocket error table."""
    start = DOC_.lines.index("### WebSocket error codes")
    rows = set()
    for line in DOC_.lines[start:]:
        if line.startswith("### HTTP"):
            break
        if line.startswith("| `"):
            rows |= set(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    named = set()
    for line in DOC_.lines:
        if "Errors:" in line or "Error:" in line:
            named |= set(re.findall(r"`([a-z][a-z_]+)`", line.split("Error", 1)[1]))
    named &= set(codes_in_the_code())  # field names in parentheses are not codes
    assert len(named) > 25
    assert named - rows == set(), "codes listed under a message's Errors but missing from the error table"


def test_every_message_type_of_the_code_is_in_the_docs():
    """Types from the models (both directions, both roles) and the wire table's events."""
    from signaling.wire_events import WIRE_RULES

    text = DOC.read_text(encoding="utf-8")
    types = schema_types(CALLER) | schema_types(AGENT) | schema_types(SERVER)
    for rule in WIRE_RULES.values():
        default = rule.model.model_fields["type"].default
        types |= {default} if isinstance(default, str) else set(typing_args(rule.model.model_fields["type"].annotation))
    missing = {kind for kind in types if f"### {kind}" not in text and f", {kind}" not in text}
    assert not missing, f"message types without a section: {missing}"


def typing_args(annotation: Any) -> tuple[Any, ...]:
    import typing

    return typing.get_args(annotation)
