"""Node leases: who owns an open call record, and who closes it when its owner is gone.

Every server process registers a node instance (a fresh id per start, whatever its configured name) and renews a
heartbeat. The records a node opens carry its instance id. A node whose lease ran out (`heartbeat_at + lease_s`
passed: it crashed or hung) or that stopped is *reaped* by whichever live node sees it first: its open call
records are closed as "interrupted", except two promises to a caller, which the reaping node claims and puts back in
its live queue: callback requests not yet fulfilled, and calls still waiting in line whose node died recently (within
`restore_within_s` of its last heartbeat): their callers resume in place with the resume token they hold (the record
keeps its hash). A call that was ringing an agent waits again; one that was connected is interrupted (its media lived
in the dead process), and its caller, who resumes with its token, is put back at the front of the line in a new call
(`Reaped.rejoins`).

A node that drains (SIGTERM) hands its waiting calls and callback requests over before it stops (`hand_over`):
their records move to a fresh instance registered as stopped at once, which any live node reaps (restores) on its
next reap, or at once when told over the bus. A node registry that sees a node silent (signaling/nodes.py, with
Redis) names it to `reap(dead=...)`, so its records are taken over without waiting for its database lease.

Reaping is safe with several nodes: a node claims a dead node with a conditional UPDATE (`reaped_by IS NULL`), so
only one of them closes its records. Times are the nodes' wall clocks: keep them in sync (NTP) and the lease well
above any clock skew.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import CallState
from .models import CallEventRow, CallRow, NodeRow

INTERRUPTED = "interrupted"  # the outcome and end reason of a record closed by a reap
HAND_OVER_CHUNK = 500  # records moved per UPDATE (a bounded IN list)
PRIVATE_COLUMNS = ("node", "node_id", "caller_resume")  # never shown by the REST API nor sent in webhooks


@dataclass(frozen=True)
class NodeLease:
    id: str  # this process start
    name: str  # the configured node name (informative only)
    lease_s: float


@dataclass
class Reaped:
    """What one reap did: records closed as interrupted (their REST shape), and the calls claimed to wait here again
    (callback requests and waiting calls, oldest first) with their events and, for a waiting call, the hash of its
    caller's resume token."""

    nodes: list[str] = field(default_factory=list)
    closed: list[dict[str, Any]] = field(default_factory=list)
    restored: list[Restored] = field(default_factory=list)
    # connected calls closed as interrupted whose caller may resume (recent node, resume hash kept): their callers
    # rejoin the line at its front in a new call (Switchboard.restore_rejoin)
    rejoins: list[Restored] = field(default_factory=list)

    @property
    def callbacks(self) -> list[Restored]:
        return [r for r in self.restored if r.row["callback"]]

    @property
    def waiting(self) -> list[Restored]:
        return [r for r in self.restored if not r.row["callback"]]

    def __bool__(self) -> bool:
        return bool(self.nodes or self.closed or self.restored or self.rejoins)


@dataclass(frozen=True)
class Restored:
    row: dict[str, Any]  # the record, as the REST API shows it
    events: list[dict[str, Any]]
    caller_resume: str | None = None  # a waiting call: the hash of its caller's resume token


def public_record(row: CallRow) -> dict[str, Any]:
    """A record as the REST API shows it (without the owning node)."""
    return {c.name: getattr(row, c.name) for c in CallRow.__table__.columns if c.name not in PRIVATE_COLUMNS}


class NodeFenced(RuntimeError):
    """This node was found dead (its lease ran out, or the node registry found it silent) while it was in fact still
    running: a process frozen, a machine paused, a partition. What it held was taken over by another node, so it
    must stop at once without writing anything shared (signaling/fence.py): its records are not its own any more."""


async def register(session: AsyncSession, node: NodeLease, at: float) -> None:
    await session.execute(insert(NodeRow).values(id=node.id, name=node.name, started_at=at, heartbeat_at=at,
                                                 lease_s=node.lease_s))


async def heartbeat(session: AsyncSession, node: NodeLease, at: float) -> bool:
    """Renew the lease. False when another node has reaped this one already (its lease ran out meanwhile)."""
    # One statement (UPDATE ... RETURNING, SQLite >= 3.35 and PostgreSQL): a beat every few seconds on every node,
    # and on SQLite every statement is a round trip to the database thread.
    reaped_by = (await session.execute(update(NodeRow).where(NodeRow.id == node.id).values(heartbeat_at=at)
                                       .returning(NodeRow.reaped_by))).scalar_one_or_none()
    return reaped_by is None


async def fence(session: AsyncSession, node: NodeLease, dialect: str) -> None:
    """In a transaction that writes this node's records, first: NodeFenced if another node has reaped it. The node's
    row is locked (PostgreSQL) until the transaction ends, so a reap of this node waits for the write and then takes
    it over too, or the write sees the reap; SQLite runs one writing transaction at a time anyway."""
    query = select(NodeRow.reaped_by).where(NodeRow.id == node.id)
    if dialect == "postgresql":
        query = query.with_for_update()
    reaped_by = await session.scalar(query)
    if reaped_by is not None:
        raise NodeFenced(f"node {node.name} ({node.id}) was reaped by {reaped_by} while it was silent; its records "
                         "were taken over")


async def stopped(session: AsyncSession, node: NodeLease, at: float) -> None:
    await session.execute(update(NodeRow).where(NodeRow.id == node.id).values(stopped_at=at, heartbeat_at=at))


async def hand_over(session: AsyncSession, me: NodeLease, call_ids: Collection[str], at: float) -> str:
    """A draining node gives its open records `call_ids` (waiting calls, callback requests) to whichever node reaps
    first: they move to a new instance, registered as stopped now (so reaping it needs no lease to run out, and
    its waiting calls count as recent). Returns that instance's id."""
    handed = NodeLease(id=secrets.token_hex(8), name=me.name, lease_s=me.lease_s)
    await session.execute(insert(NodeRow).values(id=handed.id, name=me.name, started_at=at, heartbeat_at=at,
                                                 lease_s=me.lease_s, stopped_at=at))
    ids = list(call_ids)
    for start in range(0, len(ids), HAND_OVER_CHUNK):
        await session.execute(update(CallRow).where(CallRow.id.in_(ids[start:start + HAND_OVER_CHUNK]),
                                                    CallRow.ended_at.is_(None), CallRow.node_id == me.id)
                              .values(node_id=handed.id))
    return handed.id


async def reap(session: AsyncSession, me: NodeLease, at: float, *, legacy: bool = False,
               restore_within_s: float = 0.0, dead: Collection[str] = ()) -> Reaped:
    """Claim the dead nodes, close their open records, claim their pending callback requests for `me`, and their
    waiting calls if the node was last heard of within `restore_within_s`.

    legacy: also take the open records that have no owner instance (written before node leases existed).
    dead: node instances known dead by other means (the node registry on Redis), whatever their lease says.
    """
    done = Reaped()
    gone = [NodeRow.stopped_at.is_not(None), NodeRow.heartbeat_at + NodeRow.lease_s < at]
    if dead:
        gone.append(NodeRow.id.in_(list(dead)))
    dead_rows = (await session.execute(select(NodeRow.id, NodeRow.heartbeat_at).where(
        NodeRow.reaped_by.is_(None), NodeRow.id != me.id, or_(*gone)))).all()
    recent: set[str] = set()
    for node_id, heard_at in dead_rows:
        claimed = await session.execute(update(NodeRow).where(NodeRow.id == node_id, NodeRow.reaped_by.is_(None))
                                        .values(reaped_by=me.id, reaped_at=at))
        if claimed.rowcount == 1:
            done.nodes.append(node_id)
            if at - heard_at <= restore_within_s:
                recent.add(node_id)
    owners: list[Any] = list(done.nodes)
    if legacy:
        marker = f"legacy-{me.id}"[:32]
        await session.execute(update(CallRow).where(CallRow.ended_at.is_(None), CallRow.node_id.is_(None))
                              .values(node_id=marker))
        owners.append(marker)
    if not owners:
        return done
    rows = (await session.scalars(select(CallRow).where(CallRow.ended_at.is_(None), CallRow.node_id.in_(owners))
                                  .order_by(CallRow.created_at))).all()
    if not rows:
        return done
    ids = [r.id for r in rows]
    last: dict[str, tuple[int | None, float | None]] = {}
    for call_id, seq, last_at in (await session.execute(
            select(CallEventRow.call_id, func.max(CallEventRow.seq), func.max(CallEventRow.at))
            .where(CallEventRow.call_id.in_(ids)).group_by(CallEventRow.call_id))).all():
        last[call_id] = (seq, last_at)
    events: list[dict[str, Any]] = []
    promised: list[CallRow] = []
    for row in rows:
        seq, last_at = last.get(row.id, (None, None))
        next_seq = (seq if seq is not None else -1) + 1
        waiting = (not row.callback and row.caller_resume is not None and row.node_id in recent
                   and row.state in (CallState.QUEUED.value, CallState.OFFERED.value))
        if (row.callback and row.rejoined_at is None) or waiting:
            events.append({"call_id": row.id, "seq": next_seq, "at": at,
                           "kind": "callback_restored" if row.callback else "restored",
                           "detail": {"from_node": row.node, "to_node": me.name}})
            row.node_id = me.id
            row.node = me.name
            row.state = CallState.QUEUED.value
            promised.append(row)
            continue
        rejoin = (not row.callback and row.caller_resume is not None and row.node_id in recent
                  and row.state == CallState.CONNECTED.value)
        ended = last_at or row.created_at
        row.ended_at = ended
        row.state = CallState.ENDED.value
        row.outcome = INTERRUPTED
        row.end_reason = INTERRUPTED
        row.hangup_side = "system"
        row.wait_s = (row.answered_at or ended) - row.created_at
        row.talk_s = ended - row.answered_at if row.answered_at is not None else None
        events.append({"call_id": row.id, "seq": next_seq, "at": at, "kind": INTERRUPTED,
                       "detail": {"closed_by_node": me.name, "last_seen": ended}})
        done.closed.append(public_record(row))
        if rejoin:  # a new waiting call, claimed here in this transaction; the resume hash goes with it
            resume, row.caller_resume = row.caller_resume, None
            fresh = CallRow(id=secrets.token_hex(8), subject=row.subject, identity=row.identity, location=row.location,
                            context=row.context, call_type=row.call_type, queue=row.queue,
                            state=CallState.QUEUED.value, agents=[], created_at=at, queued_at=at, node=me.name,
                            node_id=me.id, priority=row.priority, callback=False, caller_resume=resume)
            session.add(fresh)
            done.rejoins.append(Restored(public_record(fresh) | {"rejoin_of": row.id, "first_arrived": row.created_at},
                                         [], resume))
    await session.flush()
    if events:
        await session.execute(insert(CallEventRow), events)
    for row in promised:
        history = (await session.scalars(select(CallEventRow).where(CallEventRow.call_id == row.id)
                                         .order_by(CallEventRow.seq))).all()
        done.restored.append(Restored(public_record(row),
                                      [{"seq": e.seq, "at": e.at, "kind": e.kind, "detail": e.detail} for e in history],
                                      None if row.callback else row.caller_resume))
    return done
