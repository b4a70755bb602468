"""Node leases: who owns an open call record, and who closes it when its owner is gone.

Every server process registers a node instance (a fresh id per start, whatever its configured name) and renews a
heartbeat. The records a node opens carry its instance id. A node whose lease ran out (`heartbeat_at + lease_s`
passed: it crashed or hung) or that stopped is *reaped* by whichever live node sees it first: its open call
records are closed as "interrupted", except callback requests not yet fulfilled, which are a promise to the
caller: the reaping node claims them and puts them back in its live queue.

Reaping is safe with several nodes: a node claims a dead node with a conditional UPDATE (`reaped_by IS NULL`), so
only one of them closes its records. Times are the nodes' wall clocks: keep them in sync (NTP) and the lease well
above any clock skew.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import CallState
from .models import CallEventRow, CallRow, NodeRow

INTERRUPTED = "interrupted"  # the outcome and end reason of a record closed by a reap


@dataclass(frozen=True)
class NodeLease:
    id: str  # this process start
    name: str  # the configured node name (informative only)
    lease_s: float


@dataclass
class Reaped:
    """What one reap did: records closed as interrupted (their REST shape) and callback requests claimed."""

    nodes: list[str] = field(default_factory=list)
    closed: list[dict[str, Any]] = field(default_factory=list)
    callbacks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = field(default_factory=list)  # (row, events)

    def __bool__(self) -> bool:
        return bool(self.nodes or self.closed or self.callbacks)


def public_record(row: CallRow) -> dict[str, Any]:
    """A record as the REST API shows it (without the owning node)."""
    return {c.name: getattr(row, c.name) for c in CallRow.__table__.columns if c.name not in ("node", "node_id")}


async def register(session: AsyncSession, node: NodeLease, at: float) -> None:
    await session.execute(insert(NodeRow).values(id=node.id, name=node.name, started_at=at, heartbeat_at=at,
                                                 lease_s=node.lease_s))


async def heartbeat(session: AsyncSession, node: NodeLease, at: float) -> bool:
    """Renew the lease. False when another node has reaped this one already (its lease ran out meanwhile)."""
    await session.execute(update(NodeRow).where(NodeRow.id == node.id).values(heartbeat_at=at))
    reaped_by = await session.scalar(select(NodeRow.reaped_by).where(NodeRow.id == node.id))
    return reaped_by is None


async def stopped(session: AsyncSession, node: NodeLease, at: float) -> None:
    await session.execute(update(NodeRow).where(NodeRow.id == node.id).values(stopped_at=at, heartbeat_at=at))


async def reap(session: AsyncSession, me: NodeLease, at: float, *, legacy: bool = False) -> Reaped:
    """Claim the dead nodes, close their open records, claim their pending callback requests for `me`.

    legacy: also take the open records that have no owner instance (written before node leases existed).
    """
    done = Reaped()
    dead = (await session.scalars(select(NodeRow.id).where(
        NodeRow.reaped_by.is_(None), NodeRow.id != me.id,
        or_(NodeRow.stopped_at.is_not(None), NodeRow.heartbeat_at + NodeRow.lease_s < at)))).all()
    for node_id in dead:
        claimed = await session.execute(update(NodeRow).where(NodeRow.id == node_id, NodeRow.reaped_by.is_(None))
                                        .values(reaped_by=me.id, reaped_at=at))
        if claimed.rowcount == 1:
            done.nodes.append(node_id)
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
        if row.callback and row.rejoined_at is None:
            events.append({"call_id": row.id, "seq": next_seq, "at": at, "kind": "callback_restored",
                           "detail": {"from_node": row.node, "to_node": me.name}})
            row.node_id = me.id
            row.node = me.name
            promised.append(row)
            continue
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
    await session.flush()
    if events:
        await session.execute(insert(CallEventRow), events)
    for row in promised:
        history = (await session.scalars(select(CallEventRow).where(CallEventRow.call_id == row.id)
                                         .order_by(CallEventRow.seq))).all()
        done.callbacks.append((public_record(row), [{"seq": e.seq, "at": e.at, "kind": e.kind, "detail": e.detail}
                                                    for e in history]))
    return done
