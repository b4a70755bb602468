"""One line across nodes (issue 10, items 3 and 4): a caller on node A answered by an agent whose console is on node
B, with `CALLIN_REDIS_URL` set. Without it nothing here runs and the engine dispatches in-process as before.

The design (LiveKit relays signaling between nodes the same way):
- A call lives on its *home*, the node its caller reached: its engine state, its timers, its media.
- Each node mirrors into Redis what routing needs: its agents' presence (status, skills, a TTL "alive" key that it
  heartbeats, so an agent whose node died is gone within PRESENCE_TTL_S), and the home of each of its calls.
- Each node dispatches its own waiting calls, in answer order, against the agents of the whole cluster (longest
  idle first), each offer a Lua `claim_agent` (gateway/store/redis_routing.py): two nodes never ring one agent, and
  a call is offered by its one home only. Local agents are claimed the same way, so both paths obey the one rule.
- An agent of another node is represented on the home by a *stand-in*: an agent session of the home's engine whose
  deliveries are published to the agent's node (its inbox channel `node:<instance>`), which hands them to the
  agent's socket (numbered in that socket's session, replayable on resume) and mirrors the agent's status from them.
- The agent's commands about a call homed elsewhere (accept, decline, SDP, candidates, hang-up, hold, chat, push,
  wrap-up, supervise ...) are forwarded by its node to the home, executed there by the stand-in as that agent, and
  the replies come back the same way. Its console going away, coming back or signing out is told to the home too.

Transfers, consults and callback requests across nodes (issue 10):
- A named colleague of a transfer or consult (the call's home runs it, as any command of its agent) is claimed with
  the same `claim_agent` script as offers, then rung on the home like any agent: directly if its console is on the
  home, else through a stand-in (its SDP and candidates are relayed as for any remote agent; the call's media stays
  on the home). Declines, ring timeouts and a target node that dies end the ring as on one node.
- An agent's `take` of a callback request is run by the request's home (the node that holds it in the shared line;
  a request whose node died is taken over by another node within CALLIN_NODE_DEAD_AFTER_S, and the take waits for
  that, TAKE_WAIT_S at most): the home checks the request, claims the agent (exactly once with offers), checks the
  request again (two takes from two nodes: the second finds it ringing) and rings the agent.

Requests about a call homed elsewhere (REST recording control: signaling/recordings_api.py; a live call's history
and its caller's earlier calls: signaling/call_views.py; files to adopt and snapshots: signaling/files.py) are
forwarded the same way: the node that got the request asks the home, which runs the handler registered for the
request's kind and answers with its result or its typed error (the same HTTP status, code and reason as on the
home).

Messages on a node's inbox (JSON over pub/sub, at most once; a lost command is answered `node_unreachable`):
event {agent, text, slot, home} · command {corr, from, account, text} · reply {corr, wires} ·
take {corr, from, account, call} · request {corr, from, kind, text} · answer {corr, text} ·
gone / detached / resumed {agent}. Requests of kind "file" ask the home to adopt an upload or take a snapshot
(signaling/files.py; the bytes are in the shared database, never on the bus).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import structlog
from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from gateway.auth import AgentAccount
from gateway.calls import Call
from gateway.errors import BadRequest, Forbidden, GatewayError, InvalidState, NotFound, Unavailable
from gateway.events import AgentStatusChanged, CallEnded
from gateway.engine.presence import STAFFED_STATUS
from gateway.models import AgentStatus, CallState, now
from gateway.routing import AgentState
from gateway.sessions import Numbered, Session
from gateway.store.redis_bus import RedisBus
from gateway.store.redis_line import LineEntry, RedisLine
from gateway.store.redis_nodes import RedisNodeRegistry
from gateway.store.redis_routing import RedisRouting, line_score
from gateway.switchboard import Switchboard

from .outbox import Wire
from .wire_events import Relayed, event_wire

log = structlog.get_logger("callin.cluster")

PRESENCE_TTL_S = 3.0  # an agent whose node stops heartbeating is not offered calls after this
HEARTBEAT_S = 1.0  # how often a node heartbeats its agents and itself (and dispatches, if woken by nothing else)
FORWARD_TIMEOUT_S = 10.0  # a forwarded command not answered within this is answered node_unreachable
HOME_TTL_S = 24 * 3600.0
REMEMBERED_CALLS = 10_000  # how many calls of other homes a node remembers (oldest forgotten first)
HOMED_REMEMBERED = 200_000  # how many of its own calls a node remembers having written the home of (past it: written
# again at the call's next change, harmless)
ROUTING_CHANNEL = "routing"  # "an agent became available": every node dispatches again
PLACES_EVERY_S = 1.0  # the least time between reads of a node's callers' places in the shared line (at most every
# position_update_interval_s if that is longer), unless its own line changed
PLACED_TIMEOUT_S = 2.0  # call.queued waits this long at most for the call's place in the shared line
TAKE_WAIT_S = 15.0  # a take of a callback request whose node died waits this long at most for its takeover
CLAIM_MARGIN_S = FORWARD_TIMEOUT_S  # a claim holds the ring timeout plus this, unseen (see _claim_hold_s)

CALL_RELAY: web.AppKey["CallRelay"] = web.AppKey("call_relay")
# Executes a forwarded agent command at the home: (stand-in session, the message's text) -> the wire replies.
Execute = Callable[[Session, str], Awaitable[list[str]]]
# Serves a forwarded request at the home: (the request's JSON payload) -> the JSON result (or an awaitable of it),
# or a GatewayError.
Serve = Callable[[dict[str, Any]], "dict[str, Any] | Awaitable[dict[str, Any]]"]


class Home(NamedTuple):
    """Where a call not held by this node lives: its home node, and whether the node registry finds it dead."""

    node: str
    dead: bool


class AccountOut(BaseModel):
    """The agent account a forwarded command speaks for (its node authenticated the agent)."""

    username: str = Field(min_length=1, max_length=128)
    display_name: str = Field(max_length=200)
    role: str = Field(max_length=32)
    skills: list[str] = Field(default_factory=list, max_length=64)
    capacity: int = Field(1, ge=1, le=100)

    def account(self) -> AgentAccount:
        return AgentAccount(username=self.username, display_name=self.display_name, role=self.role,
                            skills=tuple(self.skills), capacity=self.capacity)

    @classmethod
    def of(cls, account: AgentAccount) -> "AccountOut":
        return cls(username=account.username, display_name=account.display_name, role=account.role,
                   skills=list(account.skills), capacity=account.capacity)


class Inbound(BaseModel):
    op: str = Field(pattern="^(event|command|take|reply|request|answer|gone|detached|resumed)$")
    kind: str | None = Field(None, max_length=32)
    agent: str | None = Field(None, max_length=128)
    home: str | None = Field(None, max_length=64)
    text: str | None = Field(None, max_length=256 * 1024)
    slot: str | None = Field(None, max_length=256)
    corr: str | None = Field(None, max_length=64)
    call: str | None = Field(None, max_length=64)
    sender: str | None = Field(None, alias="from", max_length=64)
    account: AccountOut | None = None
    wires: list[str] = Field(default_factory=list, max_length=64)


class CallRelay:
    """This node's part of the shared line: presence, dispatch by claims, stand-ins and the relay of signaling."""

    def __init__(self, board: Switchboard, routing: RedisRouting, bus: RedisBus, instance: str, execute: Execute,
                 max_message_bytes: int, registry: RedisNodeRegistry, line: RedisLine | None = None) -> None:
        self.board = board
        self.routing = routing
        self.registry = registry  # which nodes are alive (a node dead there takes its calls with it)
        self.line = line or RedisLine(routing.redis, instance, routing.prefix)
        self._places_read = float("-inf")  # when this node last read its callers' places (loop time)
        self._staff: dict[str, tuple[int, int]] | None = None  # queue -> (staffed, ready) of every node, last heard
        self._placing: dict[str, asyncio.Future[None]] = {}  # calls whose caller waits for its first shared place
        self.bus = bus
        self.instance = instance
        self.execute = execute
        self.max_message_bytes = max_message_bytes
        self._wake = asyncio.Event()
        self._outgoing: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._pending: dict[str, tuple[asyncio.Future[None], Callable[[Wire], None], str]] = {}
        self._asked: dict[str, asyncio.Future[dict[str, Any]]] = {}  # REST requests forwarded to homes, by corr
        self._serve: dict[str, Serve] = {}  # kind -> what runs a forwarded REST request here (register_request)
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        # this node's agents
        self._pushed: dict[str, tuple[str, str, frozenset[str]]] = {}  # last presence pushed per agent
        self._seen: dict[str, str] = {}  # the last call seen offered to each agent (see push_presence)
        self._home_of_agent: dict[str, str] = {}  # the home of the remote call each agent last heard from
        self._remote_calls: dict[str, str] = {}  # call id -> home, for calls this node's agents heard of
        self._lost: dict[str, None] = {}  # calls whose home died (their agents here were told node_lost)
        # this node's agents wrapping up a call of another home: username -> (call id, started, ends; UNIX s), as the
        # home last told (its agent.status wrap_up and wrap_up_s): taken over here if that home dies
        self._wrapping: dict[str, tuple[str, float, float]] = {}
        # agents of other nodes, in calls homed here
        self._stand_ins: dict[str, Session] = {}
        self._stand_in_node: dict[str, str] = {}
        self._sinks: dict[str, Callable[[Numbered], None]] = {}
        self._foreign: set[str] = set()  # agents that had a stand-in here: their presence is their node's
        self._stand_in_ids: set[str] = set()
        self._detached: set[str] = set()  # stand-ins whose agent's console lost its socket (told by its node)
        self._claimed: dict[str, float] = {}  # stand-ins claimed for a transfer or a take, not rung yet (loop time)
        self._homes: list[str] = []  # calls queued here whose home is to be written
        self._homed: dict[str, None] = {}  # calls whose home this node wrote (a restored call is not "queued" here)
        self._request_tasks: set[asyncio.Task[None]] = set()  # forwarded requests being served here

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        board = self.board
        board.route_with(self._wake.set)
        board.claim_colleagues_with(self)
        board.on("call.queued", self._queued)
        board.on("call.updated", self._updated)  # a call restored here from a dead or draining node: its new home
        board.on("agent.detached", lambda s: self._tell_home(s, "detached"))
        board.on("agent.resumed", lambda s: self._tell_home(s, "resumed"))
        board.on("agent.released", lambda s: self._tell_home(s, "gone"))
        await self.bus.subscribe(f"node:{self.instance}", self._inbox)
        await self.bus.subscribe(ROUTING_CHANNEL, self._woken)
        self._tasks = [asyncio.ensure_future(self._sender()), asyncio.ensure_future(self._worker()),
                       asyncio.ensure_future(self._beating())]
        self._wake.set()

    async def close(self) -> None:
        self._closed = True
        self.board.route_with(None)
        self.board.claim_colleagues_with(None)
        for task in [*self._tasks, *self._request_tasks]:
            task.cancel()
        for task in [*self._tasks, *self._request_tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for fut, _send, _who in self._pending.values():
            if not fut.done():
                fut.cancel()
        for asked in self._asked.values():
            if not asked.done():
                asked.cancel()
        for placing in self._placing.values():
            placing.cancel()
        with contextlib.suppress(Exception):
            await self.line.leave()

    # -- sending to other nodes, in order ----------------------------------------------------------------------------
    def _post(self, node: str, message: dict[str, Any]) -> None:
        if not self._closed:
            self._outgoing.put_nowait((node, message))

    async def _sender(self) -> None:
        while True:
            node, message = await self._outgoing.get()
            try:
                await self.bus.publish(f"node:{node}", message)
            except Exception:  # a lost message: a forwarded command times out, a stand-in event is replayed
                log.warning("cluster.publish_failed", to=node, op=message.get("op"), exc_info=True)

    async def _woken(self, _message: dict[str, Any]) -> None:
        self._wake.set()

    def _queued(self, call: Call) -> None:
        _remember(self._homed, call.id, None, HOMED_REMEMBERED)
        self._homes.append(call.id)
        self._wake.set()

    def _updated(self, call: Call) -> None:
        """A call that waits here without having been queued here (restored from its record after its node died or
        drained) is homed here now: written, so that another node forwards what is about it here (REST, agents)."""
        if call.id not in self._homed and call.state is CallState.QUEUED and self.board.call(call.id) is call:
            self._queued(call)

    # -- the worker: presence, homes, dispatch -----------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=HEARTBEAT_S)
            self._wake.clear()
            try:
                while self._homes:
                    await self.routing.set_home(self._homes.pop(0), HOME_TTL_S)
                await self._push_presence()
                changed = await self._sync_line()
                await self._dispatch()
                await self._read_places(changed)
                self._drop_idle_stand_ins()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster.worker_failed")
                await asyncio.sleep(0.5)

    async def _beating(self) -> None:
        """Heartbeats in a task of their own: a long dispatch pass never lets this node look dead."""
        while True:
            try:
                await self._heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster.heartbeat_failed")
            await asyncio.sleep(HEARTBEAT_S)

    def _local_agents(self) -> list[Any]:
        """The agents whose console is on this node (not stand-ins, nor what is left of one)."""
        mine = []
        for agent in self.board.all_agents():
            if agent.username in self._foreign:
                if agent.session_id is None or agent.session_id in self._stand_in_ids:
                    continue
                self._foreign.discard(agent.username)  # signed in here since
            mine.append(agent)
        return mine

    async def _heartbeat(self) -> None:
        alive = [a.username for a in self._local_agents() if self.board.attached(a)]
        if alive:
            stale = await self.routing.heartbeat(alive, PRESENCE_TTL_S)
            if stale:  # rung by a claim whose offer will never come (its claimer died, or it was lost): say their
                for username in stale:  # status again, which writes over that claim (push_presence)
                    self._pushed.pop(username, None)
                self._wake.set()
        await self._check_nodes()

    async def _check_nodes(self) -> None:
        """A node that died takes its calls with it: this node's agents in one of them are told the call ended
        (node_lost) and are available again; stand-ins of agents whose node died lose their socket here (the call
        ends as with any agent who does not come back within the resume grace)."""
        remote: dict[str, tuple[Any, str]] = {}
        for agent in self._local_agents():
            call_id = agent.call_id or agent.wrap_up_call
            if call_id and call_id in self._remote_calls and not self._answered_here(call_id, agent.username):
                remote[agent.username] = (agent, call_id)
        homes = {self._remote_calls[call_id] for _, call_id in remote.values()}
        down = await self.registry.down(homes | set(self._stand_in_node.values()), time.time())
        for username, node in list(self._stand_in_node.items()):
            session, sink = self._stand_ins.get(username), self._sinks.get(username)
            if node not in down and session is not None and sink is not None and session.sink is None \
                    and not session.ended and username not in self._detached:
                self.board.attach(session, sink)  # its node is back (it was only slow): what it missed is replayed
        if not down:
            return
        for username, (agent, call_id) in remote.items():
            home = self._remote_calls.pop(call_id, None)
            if home not in down:
                if home is not None:
                    self._remote_calls[call_id] = home
                continue
            _remember(self._lost, call_id, None)
            wrapping = self._wrapping.pop(username, None)
            if agent.status is AgentStatus.WRAP_UP and wrapping is not None and wrapping[0] == call_id \
                    and self.board.adopt_wrap_up(username, call_id, wrapping[1], wrapping[2]):
                # The call had ended; only its wrap-up was left, and this node holds the agent: it goes on here,
                # until the time its home gave it (the note is written to the call's record from here).
                log.warning("cluster.wrap_up_adopted", agent=username, call_id=call_id, home=home,
                            left_s=round(wrapping[2] - time.time(), 1))
                continue
            self.board.follow_agent(username, AgentStatus.AVAILABLE)
            self.board.tell_agent(username, CallEnded(call_id=call_id, reason="node_lost", by="system"))
            self.board.tell_agent(username, AgentStatusChanged(status=AgentStatus.AVAILABLE.value, reason="node_lost"))
            log.warning("cluster.home_lost", agent=username, call_id=call_id, home=home)
        for username, node in list(self._stand_in_node.items()):
            session, sink = self._stand_ins.get(username), self._sinks.get(username)
            if node in down and session is not None and sink is not None and session.sink is sink:
                log.warning("cluster.agent_node_lost", agent=username, node=node)
                self.board.detach(session, sink)
        self.board.recheck()

    def _answered_here(self, call_id: str, username: str) -> bool:
        """Whether this node now holds the call with this agent in it. A call homed on a node that died may be
        restored here as a waiting call (its record did not say connected yet when the node died): that is another
        life of the call, and the agent's part in the old one is over."""
        call = self.board.call(call_id)
        return call is not None and call.agent == username and call.state is not CallState.QUEUED

    async def _push_presence(self) -> None:
        woke = False
        for agent in self._local_agents():
            attached = self.board.attached(agent)
            status = agent.status.value if attached else AgentStatus.OFFLINE.value
            call = agent.call_id or agent.wrap_up_call or ""
            key = (status, call, agent.skills)
            if self._pushed.get(agent.username) == key:
                continue
            session = self.board.session(agent.session_id or "")
            account = session.principal if session is not None else None
            if attached and agent.username not in self._pushed:
                await self.routing.heartbeat([agent.username], PRESENCE_TTL_S)
            done = await self.routing.push_presence(
                agent.username, status, call, self._seen.get(agent.username, ""), agent.skills, agent.idle_since,
                agent.display_name, getattr(account, "role", "agent"), agent.capacity)
            if done == 2:  # a claim whose offer never came (its claimer died, or it was lost): the agent is free
                log.warning("cluster.stale_claim_dropped", agent=agent.username, status=status)
            if done:
                self._pushed[agent.username] = key
                woke = woke or status == AgentStatus.AVAILABLE.value
        if woke:
            await self.bus.publish(ROUTING_CHANNEL, {"by": self.instance})

    # -- the shared line: one order and one count of places over every node ----------------------------------------
    async def _sync_line(self) -> bool:
        """Mirror this node's waiting calls into the shared line (only what changed). True if anything did."""
        entries = [LineEntry(call.id, call.queue, _score(call), offerable, frozenset(call.declined_by))
                   for call, offerable in self.board.line_state()]
        return await self.line.sync(entries) > 0

    async def _read_places(self, changed: bool) -> None:
        """This node's callers' places over the whole cluster, told to them (at once if this node's line changed,
        else at most every PLACES_EVERY_S or position_update_interval_s: other nodes' changes reach these callers
        within about that)."""
        at = asyncio.get_running_loop().time()
        every = max(PLACES_EVERY_S, self.board.settings.position_update_interval_s)
        if not changed and at - self._places_read < every:
            return
        self._places_read = at
        waiting = [(call.id, call.queue) for call, _ in self.board.line_state()]
        places = await self.line.places(waiting)
        lengths = await self.line.lengths(q.name for q in self.board.all_queues())
        self.board.shared_line(places, self._staff, lengths)
        for call_id in [c for c in self._placing if c in places]:
            future = self._placing.pop(call_id)
            if not future.done():
                future.set_result(None)

    async def placed(self, call: Call) -> None:
        """Wait (PLACED_TIMEOUT_S at most) until a call that just joined has its place in the shared line, so
        that call.queued tells the caller its place among every node's callers."""
        if call.state is not CallState.QUEUED or self._closed:
            return
        future = self._placing.get(call.id)
        if future is None:
            future = self._placing[call.id] = asyncio.get_running_loop().create_future()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(future), PLACED_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.warning("cluster.place_late", call_id=call.id)
        finally:
            self._placing.pop(call.id, None)

    def staff_counts(self) -> dict[str, tuple[int, int]]:
        """queue -> (staffed, ready) that this node adds to the cluster's: its own agents (not stand-ins) signed in
        with the queue's skills, and of them the free ones, plus this node's calls of the queue ringing anywhere."""
        agents = [a for a in self._local_agents() if self.board.attached(a)]
        ringing: dict[str, int] = {}
        for call in self.board.waiting_calls():
            if call.state is CallState.OFFERED:
                ringing[call.queue] = ringing.get(call.queue, 0) + 1
        counts: dict[str, tuple[int, int]] = {}
        for queue in self.board.all_queues():
            skills = queue.skills
            staffed = sum(1 for a in agents if a.status in STAFFED_STATUS and a.can_take(skills))
            free = sum(1 for a in agents if a.status is AgentStatus.AVAILABLE and a.can_take(skills))
            counts[queue.name] = (staffed, free + ringing.get(queue.name, 0))
        return counts

    def status_counts(self) -> dict[str, int]:
        """agent status -> how many of this node's own agents (not stand-ins) have it; signed-out ones left out."""
        counts: dict[str, int] = {}
        for agent in self._local_agents():
            if self.board.attached(agent) and agent.status is not AgentStatus.OFFLINE:
                counts[agent.status.value] = counts.get(agent.status.value, 0) + 1
        return counts

    def cluster_staff(self, staff: dict[str, tuple[int, int]]) -> None:
        """Every live node's staff_counts summed (from the node registry): the wait estimates' inputs."""
        self._staff = staff

    async def forget_node(self, instance: str) -> None:
        """A node found dead (by this node's registry beat): its callers leave the shared line (they rejoin where
        they reconnect, in their place), and this node's agents in its calls are freed now, not at the next beat."""
        await self.line.forget_node(instance)
        await self._check_nodes()
        self._wake.set()

    async def _dispatch(self) -> None:
        """This node's waiting calls, in answer order, to the longest-idle available agents of the cluster; an
        agent for whom an earlier call of another node waits is left to that node (one line over every node)."""
        # In the shared line's order (a call restored here from a dead node joined this node's line at the back, but
        # keeps its place in the cluster's): a later call would only yield to it.
        calls = sorted(self.board.offerable(), key=lambda item: _score(item[0]))
        if not calls:
            return
        agents = await self.routing.available()
        queues = self.board.all_queues()
        offered = False
        for call, skills in calls:
            if not agents:
                break
            for candidate in list(agents):
                if candidate.username in call.declined_by or not skills <= candidate.skills:
                    continue
                agents.remove(candidate)  # claimed now, taken by someone else meanwhile, or an earlier call's
                before = [self.line.ready_key(q.name) for q in queues if q.skills <= candidate.skills]
                node = await self.routing.claim_agent(call.id, candidate.username, skills, score=_score(call),
                                                      before=before, hold_s=self._claim_hold_s())
                if node is None:
                    continue
                # The claim wrote "ringing" behind this node's last push: say the agent's status again even if it is
                # back to what was pushed (offered, answered and ended before the next push).
                self._pushed.pop(candidate.username, None)
                if call.state is not CallState.QUEUED or call.awaiting_caller or self._closed:
                    await self.routing.unclaim(call.id, candidate.username, now())
                    break  # the call went away (or was offered otherwise) while claiming
                if await self._offer(call, candidate.username, node):
                    offered = True
                    break
                await self.routing.unclaim(call.id, candidate.username, now())
        if offered:
            self.board.recheck()  # places in line, notices; wakes this worker again for what is left

    def _claim_hold_s(self) -> float:
        """How long a claim holds its agent while the agent's node has not seen its offer: the ring (offers and
        consults ring ring_timeout_s) plus the time a claimed colleague may wait to be rung (FORWARD_TIMEOUT_S).
        Past that its offer is lost for sure, and the agent's node frees the agent (a claimer found dead, sooner)."""
        return self.board.settings.ring_timeout_s + CLAIM_MARGIN_S

    async def _offer(self, call: Call, username: str, node: str) -> bool:
        if node == self.instance and username not in self._foreign:
            state = self.board.agent(username)
            if state is None or not self.board.attached(state) or state.status is not AgentStatus.AVAILABLE:
                return False
            self._seen[username] = call.id
            return self.board.offer(call, state)
        profile = await self.routing.agent_state(username)
        try:
            account = AccountOut(username=username, display_name=profile.get("display_name") or username,
                                 role=profile.get("role") or "agent", skills=profile.get("skills", "").split(),
                                 capacity=int(profile.get("capacity") or 1)).account()
        except (ValidationError, ValueError):
            return False
        if call.state is not CallState.QUEUED or call.awaiting_caller:
            return False
        self._stand_in(account, node, console_alive=True)
        state = self.board.agent(username)
        if state is None or state.status in (AgentStatus.RINGING, AgentStatus.BUSY):
            return False
        self.board.cancel_wrap_up(state)
        self.board.follow_agent(username, AgentStatus.AVAILABLE)  # the claim says so
        return self.board.offer(call, state)

    # -- claiming a named agent: transfers, consults, callback requests taken ------------------------------------
    async def _claim(self, call: Call, username: str, skills: frozenset[str],
                     account: AgentAccount | None = None) -> AgentState | None:
        """Claim `username` ringing for `call` (of this node) in the shared store, the same script as offers (no
        other node can ring it meanwhile); its state here, available (a stand-in if its console is on another
        node), or None: not claimed (taken, busy, gone). A claim that cannot be used is given back here."""
        node = await self.routing.claim_agent(call.id, username, skills, hold_s=self._claim_hold_s())
        if node is None:
            return None
        self._pushed.pop(username, None)  # say the agent's status again after this, whatever it is then
        state = None
        if node == self.instance and username not in self._foreign:
            state = self.board.agent(username)
            if state is not None and (not self.board.attached(state) or state.status is not AgentStatus.AVAILABLE):
                state = None
            if state is not None:
                self._seen[username] = call.id
        else:
            if account is None:
                profile = await self.routing.agent_state(username)
                with contextlib.suppress(ValidationError, ValueError):
                    account = AccountOut(username=username, display_name=profile.get("display_name") or username,
                                         role=profile.get("role") or "agent", skills=profile.get("skills", "").split(),
                                         capacity=int(profile.get("capacity") or 1)).account()
            if account is not None and not self._closed:
                self._stand_in(account, node, console_alive=True)
                state = self.board.agent(username)
                if state is not None and state.status in (AgentStatus.RINGING, AgentStatus.BUSY):
                    state = None
                if state is not None:
                    self.board.cancel_wrap_up(state)
                    self.board.follow_agent(username, AgentStatus.AVAILABLE)  # the claim says so
                    self._claimed[username] = asyncio.get_running_loop().time()  # kept until it rings
        if state is None:
            await self.routing.unclaim(call.id, username, now())
        return state

    async def claim_colleague(self, call: Call, username: str) -> AgentState:
        """A transfer or consult names `username`: claimed for `call`, wherever its console is (ColleagueClaims)."""
        state = await self._claim(call, username, frozenset())
        if state is not None:
            return state
        profile = await self.routing.agent_state(username)
        alive = await self.routing.redis.exists(self.routing.alive_key(username))
        status = profile.get("status") or AgentStatus.OFFLINE.value
        if not alive or status == AgentStatus.OFFLINE.value:
            raise NotFound(f"no signed-in agent {username!r}", code="unknown_agent")
        local = self.board.agent(username)
        if status == AgentStatus.AVAILABLE.value and local is not None and username not in self._foreign:
            status = local.status.value  # what this node knows better than its last push
        raise InvalidState(f"{username} is {status}", code="target_unavailable", retryable=True)

    async def give_back(self, call: Call, username: str) -> None:
        """A claim a transfer did not use (the call changed meanwhile): the agent is available again."""
        self._pushed.pop(username, None)
        self._claimed.pop(username, None)
        await self.routing.unclaim(call.id, username, now())
        self._wake.set()

    async def take_callback(self, username: str, call_id: str) -> str:
        """This node's agent `username` takes the callback request `call_id`, wherever it waits: rung now, exactly
        once cluster-wide; returns the call id (the typed errors of one node otherwise)."""
        state = self.board.agent(username)
        session = self.board.session(state.session_id) if state is not None else None
        if state is None or session is None or session.id in self._stand_in_ids or not self.board.attached(state):
            raise InvalidState("sign in to the console to take a callback", code="not_signed_in")
        account: AgentAccount = session.principal
        if len(call_id) > 64:  # not an id this gateway made (and not one to pass on to another node)
            raise InvalidState("this callback request is no longer waiting", code="callback_gone")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TAKE_WAIT_S
        while True:
            if self.board.call(call_id) is not None:
                return (await self._take_here(account, call_id)).id
            home = await self.line.owner(call_id) or await self.routing.home_of(call_id)
            if home is None or home == self.instance:
                raise InvalidState("this callback request is no longer waiting", code="callback_gone")
            if not await self.registry.down([home], time.time()):
                try:
                    return _answer(await self._ask(home, {"op": "take", "call": call_id,
                                                          "account": AccountOut.of(account).model_dump()}, username))
                except Unavailable as exc:
                    if exc.code != "node_unreachable" or not await self.registry.down([home], time.time()):
                        raise
                    # its node died while asked: another node takes the request over (asked next)
            if loop.time() >= deadline:  # its node died and no node has taken its requests over yet
                raise Unavailable("the node that held this callback request stopped; another node takes it over "
                                  "within seconds: try again", code="callback_moving")
            await asyncio.sleep(0.25)

    async def _take_here(self, account: AgentAccount, call_id: str) -> Call:
        skills = frozenset(account.skills)
        call = self.board.takeable_callback(call_id, skills)
        state = await self._claim(call, account.username, self.board.queue_of(call).skills, account)
        if state is None:
            raise InvalidState("be available to take a callback (the gateway sees you busy or away)",
                               code="agent_busy", retryable=True)
        try:  # again: another take, or an offer, may have got it while the agent was claimed
            call = self.board.takeable_callback(call_id, skills)
            self.board.give_callback(call, state)
        except GatewayError:
            await self.give_back(call, account.username)
            raise
        log.info("cluster.callback_taken", call_id=call.id, agent=account.username)
        return call

    async def _take_command(self, message: Inbound) -> None:
        """An agent of another node takes a callback request waiting here."""
        if message.account is None or not message.sender or not message.corr or not message.call:
            return
        try:
            call = await self._take_here(message.account.account(), message.call)
            answer: dict[str, Any] = {"call_id": call.id}
        except GatewayError as exc:
            answer = {"error": {"code": exc.code, "reason": exc.reason, "status": exc.status,
                                "retryable": exc.retryable}}
        except Exception:
            log.exception("cluster.take_failed", agent=message.account.username, call_id=message.call)
            answer = {"error": {"code": "internal_error", "reason": "the request's node failed", "status": 500,
                                "retryable": True}}
        self._post(message.sender, {"op": "reply", "corr": message.corr, "wires": [json.dumps(answer)]})

    async def _ask(self, node: str, message: dict[str, Any], username: str) -> dict[str, Any]:
        """Send `message` to `node` and wait for its one reply (a JSON object)."""
        answers: list[str] = []
        corr = secrets.token_hex(8)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[corr] = (future, lambda wire: answers.append(wire.text), username)
        self._post(node, message | {"corr": corr, "from": self.instance})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FORWARD_TIMEOUT_S
        try:
            while True:  # not answered: given up at the deadline, or at once when the node is found dead
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), min(HEARTBEAT_S, deadline - loop.time()))
                if future.done():
                    break
                if loop.time() >= deadline or await self.registry.down([node], time.time()):
                    raise Unavailable("the node that holds this call did not answer; try again",
                                      code="node_unreachable")
        finally:
            self._pending.pop(corr, None)
            future.cancel()
        try:
            answer = json.loads(answers[0]) if answers else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise Unavailable("the node that holds this call answered nothing readable", code="node_unreachable")
        return answer

    # -- stand-ins: agents of other nodes in calls homed here --------------------------------------------------------
    def _stand_in(self, account: AgentAccount, node: str, *, console_alive: bool = False) -> Session:
        """The agent's stand-in here (made if there is none). `console_alive`: the shared presence just said the
        agent's console is attached on `node` (a claim found it alive and available there)."""
        username = account.username
        self._stand_in_node[username] = node
        session = self._stand_ins.get(username)
        if session is not None and self.board.session(session.id) is session:
            sink = self._sinks.get(username)
            if console_alive and username in self._detached and session.sink is None and sink is not None:
                # Its console lost its socket and then signed in again (a new session there, which sends no
                # "resumed"): deliver again, else what rings this stand-in would ring nobody until it timed out.
                self._detached.discard(username)
                self.board.attach(session, sink)
            return session
        session = self.board.open_agent(account)
        self._stand_ins[username] = session

        def sink(item: Numbered) -> None:
            wire = event_wire(item.event)
            self._post(self._stand_in_node[username], {"op": "event", "agent": username, "text": wire.text,
                                                       "slot": wire.slot, "home": self.instance})

        self._sinks[username] = sink
        self._foreign.add(username)
        self._stand_in_ids.add(session.id)
        self.board.attach(session, sink)
        log.info("cluster.stand_in", agent=username, node=node)
        return session

    def _drop_idle_stand_ins(self) -> None:
        """A stand-in in no call of this node any more is dropped (the agent is its own node's again)."""
        for username, session in list(self._stand_ins.items()):
            state = self.board.agent(username)
            if self.board.session(session.id) is not session or state is None or state.session_id != session.id:
                self._forget_stand_in(username)
                continue
            if state.status not in (AgentStatus.AVAILABLE, AgentStatus.AWAY) or state.call_id or state.wrap_up_call:
                continue
            if self.board.in_a_call(username):
                continue
            claimed = self._claimed.get(username)
            if claimed is not None and asyncio.get_running_loop().time() - claimed < FORWARD_TIMEOUT_S:
                continue  # claimed for a transfer or a take that has not rung it yet
            self._claimed.pop(username, None)
            self.board.drop_session(session)
            self._forget_stand_in(username)

    def _forget_stand_in(self, username: str) -> None:
        session = self._stand_ins.pop(username, None)
        if session is not None:
            self._stand_in_ids.discard(session.id)
        self._sinks.pop(username, None)
        self._detached.discard(username)
        self._claimed.pop(username, None)
        self._stand_in_node.pop(username, None)

    # -- forwarding an agent's command to the home of its call -------------------------------------------------------
    async def home_for(self, session: Session, message: Any) -> str | None:
        """The other node that holds the call this message is about (None: this node, or no call)."""
        call_id = getattr(message, "call_id", None)
        state = self.board.agent(session.principal.username)
        if call_id is None and getattr(message, "type", None) == "agent.status" and state is not None:
            call_id = state.wrap_up_call or (state.call_id if state.status in (AgentStatus.RINGING,
                                                                               AgentStatus.BUSY) else None)
        if not call_id or self.board.call(call_id) is not None or call_id in self._lost:
            return None  # here (a lost call: this node answers that it does not know it)
        home = self._remote_calls.get(call_id) or await self.routing.home_of(call_id)
        return home if home and home != self.instance else None

    async def forward(self, home: str, session: Session, text: str, send: Callable[[Wire], None]) -> None:
        """Run the agent's message at the call's home as that agent; its replies are sent on `send` in order with
        the events the home delivers meanwhile."""
        corr = secrets.token_hex(8)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        username = session.principal.username
        self._pending[corr] = (future, send, username)
        self._home_of_agent[username] = home
        self._post(home, {"op": "command", "corr": corr, "from": self.instance, "text": text,
                          "account": AccountOut.of(session.principal).model_dump()})
        try:
            await asyncio.wait_for(future, FORWARD_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise Unavailable("the node that holds this call did not answer; try again",
                              code="node_unreachable") from None
        finally:
            self._pending.pop(corr, None)

    async def home_of_call(self, call_id: str) -> Home | None:
        """The other node that holds this call, and whether it is dead in the node registry (None: this node holds
        it, or no node is known to). The one lookup of REST requests about a call (files, recording control, call
        views); each caller says what a dead home means to it. The home written in the routing store is the truth:
        a call restored on another node after its home died is found at its new home."""
        if self.board.call(call_id) is not None:
            return None
        home = await self.routing.home_of(call_id)
        if not home or home == self.instance:
            return None
        return Home(home, home in await self.registry.down({home}, time.time()))

    # -- forwarding a REST request to the home of its call ------------------------------------------------------------
    def register_request(self, kind: str, serve: Serve) -> None:
        """What runs a REST request of this kind when another node forwards it here (the call is homed here)."""
        self._serve[kind] = serve

    async def live_home(self, call_id: str) -> str | None:
        """The other node that holds this call (None: this node holds it, or no node is known to), for a request that
        must be run there: a home found dead in the node registry is answered at once, 503 node_unreachable
        (retryable), not after a timeout."""
        home = await self.home_of_call(call_id)
        if home is not None and home.dead:
            raise Unavailable("the node that held this call is down; its calls in progress there have ended",
                              code="node_unreachable")
        return None if home is None else home.node

    async def ask_home(self, home: str, kind: str, payload: dict[str, Any],
                       timeout: float = FORWARD_TIMEOUT_S) -> dict[str, Any]:
        """Run a REST request at the call's home; its result, or its typed error raised here as it was there."""
        corr = secrets.token_hex(8)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._asked[corr] = future
        self._post(home, {"op": "request", "corr": corr, "from": self.instance, "kind": kind,
                          "text": json.dumps(payload)})
        try:
            answer = await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise Unavailable("the node that holds this call did not answer; try again",
                              code="node_unreachable", retryable=True) from None
        finally:
            self._asked.pop(corr, None)
        error = answer.get("error")
        if isinstance(error, dict):
            exc = GatewayError(str(error.get("reason", "")), code=str(error.get("code", "internal_error")),
                               retryable=bool(error.get("retryable")))
            status = error.get("status")
            exc.status = status if isinstance(status, int) and 400 <= status < 600 else 500
            raise exc
        result = answer.get("result")
        return result if isinstance(result, dict) else {}

    def _request(self, message: Inbound) -> None:
        """A request of another node about a call homed here (a REST request, a file to adopt, a snapshot to take):
        run in a task of its own (a snapshot takes a while; the inbox keeps flowing), then answered with its result or
        its typed error."""
        if not message.sender or not message.corr:
            return
        sender, corr, kind = message.sender, message.corr, message.kind or ""

        async def run() -> None:
            serve = self._serve.get(kind)
            try:
                if serve is None:
                    raise GatewayError(f"this node does not serve {kind!r} requests", code="internal_error")
                payload = json.loads(message.text or "{}")
                if not isinstance(payload, dict):
                    raise ValueError("not an object")
                result = serve(payload)
                if inspect.isawaitable(result):
                    result = await result
                answer: dict[str, Any] = {"result": result}
            except GatewayError as exc:
                answer = {"error": {"status": exc.status, "code": exc.code, "reason": exc.reason,
                                    "retryable": exc.retryable}}
            except Exception:
                log.exception("cluster.request_failed", kind=kind)
                answer = {"error": {"status": 500, "code": "internal_error", "reason": "internal error"}}
            self._post(sender, {"op": "answer", "corr": corr, "text": json.dumps(answer)})
            self.board.recheck()

        task = asyncio.ensure_future(run())
        self._request_tasks.add(task)
        task.add_done_callback(self._request_tasks.discard)

    def _answer(self, message: Inbound) -> None:
        future = self._asked.get(message.corr or "")
        if future is None or future.done():
            return  # answered too late: the client was told node_unreachable
        try:
            answer = json.loads(message.text or "{}")
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {"error": {"status": 502, "code": "node_unreachable", "reason": "the home's answer was garbled"}}
        future.set_result(answer)

    def _tell_home(self, session: Session, op: str) -> None:
        username = session.principal.username
        home = self._home_of_agent.get(username)
        if home is not None and session.id not in self._stand_in_ids:
            self._post(home, {"op": op, "agent": username})
            if op == "gone":
                self._home_of_agent.pop(username, None)

    # -- the inbox -----------------------------------------------------------------------------------------------
    async def _inbox(self, raw: dict[str, Any]) -> None:
        try:
            message = Inbound.model_validate(raw)
        except ValidationError:
            log.warning("cluster.bad_message", channel="node")
            return
        match message.op:
            case "event":
                self._event(message)
            case "reply":
                self._reply(message)
            case "command":
                await self._command(message)
            case "take":
                await self._take_command(message)
            case "request":
                self._request(message)
            case "answer":
                self._answer(message)
            case _:
                self._agent_changed(message)

    def _event(self, message: Inbound) -> None:
        """An event of a call homed elsewhere for one of this node's agents: to its socket, its status mirrored."""
        username, text = message.agent or "", message.text or ""
        state = self.board.agent(username)
        if message.home:
            self._home_of_agent[username] = message.home
        self._mirror(username, text, message.home)
        session = self.board.session(state.session_id or "") if state is not None else None
        if session is None or session.id in self._stand_in_ids:
            if message.home:  # nobody here any more: the home ends its part
                self._post(message.home, {"op": "gone", "agent": username})
            return
        session.deliver(Relayed(text, message.slot))  # type: ignore[arg-type]

    def _reply(self, message: Inbound) -> None:
        pending = self._pending.get(message.corr or "")
        if pending is None:
            return  # answered too late: the agent was told node_unreachable
        future, send, username = pending
        for text in message.wires:
            self._mirror(username, text, None)
            send(Wire(text))
        if not future.done():
            future.set_result(None)

    def _mirror(self, username: str, text: str, home: str | None) -> None:
        """The agent's status here follows what the home tells it (so its node pushes the right presence)."""
        try:
            data = json.loads(text)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        state = self.board.agent(username)
        call_id = data.get("call_id") if isinstance(data.get("call_id"), str) else None
        if call_id and home:
            _remember(self._remote_calls, call_id, home)
            if self._seen.get(username) != call_id:  # any word of a call from its home: an offer of it was made
                self._seen[username] = call_id
                self._pushed.pop(username, None)  # say the agent's status again (a claim it had not seen may hold)
        if state is None or (state.call_id and self.board.call(state.call_id) is not None):
            return  # in a call of this node: that one says
        kind = data.get("type")
        if kind == "call.offered" and call_id:
            self._seen[username] = call_id
            self.board.follow_agent(username, AgentStatus.RINGING, call_id)
        elif kind == "offer.withdrawn" and call_id and state.call_id == call_id:
            if state.status is AgentStatus.RINGING:
                self.board.follow_agent(username, AgentStatus.AVAILABLE)
        elif kind == "agent.status":
            try:
                status = AgentStatus(data.get("status"))
            except ValueError:
                return
            self.board.follow_agent(username, status, call_id)
            self._follow_wrap_up(username, status, call_id, data.get("wrap_up_s"))
        else:
            return
        self._wake.set()

    def _follow_wrap_up(self, username: str, status: AgentStatus, call_id: str | None, wrap_up_s: Any) -> None:
        """Remember until when the home lets this node's agent wrap a call up (its start, its extensions)."""
        if status is not AgentStatus.WRAP_UP:
            self._wrapping.pop(username, None)
            return
        if not call_id or isinstance(wrap_up_s, bool) or not isinstance(wrap_up_s, (int, float)) or wrap_up_s < 0:
            return
        at = time.time()
        before = self._wrapping.get(username)
        started = before[1] if before is not None and before[0] == call_id else at
        self._wrapping[username] = (call_id, started, at + min(float(wrap_up_s), 24 * 3600.0))

    async def _command(self, message: Inbound) -> None:
        """An agent of another node acts on a call homed here: run as its stand-in, replies sent back."""
        if message.account is None or not message.sender or not message.corr:
            return
        session = self._stand_in(message.account.account(), message.sender)
        try:
            wires = await self.execute(session, message.text or "")
        except Exception:
            log.exception("cluster.command_failed", agent=message.account.username)
            wires = []
        self._post(message.sender, {"op": "reply", "corr": message.corr, "wires": wires})
        self.board.recheck()

    def _agent_changed(self, message: Inbound) -> None:
        """The agent's console (on its node) lost its socket, came back, or is gone for good."""
        username = message.agent or ""
        session = self._stand_ins.get(username)
        if session is None or self.board.session(session.id) is not session:
            return
        sink = self._sinks.get(username)
        if message.op == "detached" and sink is not None:
            self._detached.add(username)
            self.board.detach(session, sink)
        elif message.op == "resumed" and sink is not None:
            self._detached.discard(username)
            self.board.attach(session, sink)
            self.board.recheck()
        elif message.op == "gone":
            self._forget_stand_in(username)
            self.board.release_session(session)
        self._wake.set()


_ERRORS: dict[int, type[GatewayError]] = {400: BadRequest, 403: Forbidden, 404: NotFound, 409: InvalidState,
                                          503: Unavailable}


def _answer(answer: dict[str, Any]) -> str:
    """A take's answer from the request's home: its call id, or the typed error it raised there, raised here."""
    error = answer.get("error")
    if isinstance(error, dict):
        kind = _ERRORS.get(error.get("status") if isinstance(error.get("status"), int) else 500, GatewayError)
        raise kind(str(error.get("reason") or "refused")[:500], code=str(error.get("code") or "internal_error")[:64],
                   retryable=bool(error.get("retryable")))
    call_id = answer.get("call_id")
    if not isinstance(call_id, str):
        raise Unavailable("the node that holds this call answered nothing readable", code="node_unreachable")
    return call_id


def _score(call: Call) -> float:
    """A call's place in the shared line: priority first, then when it arrived (a caller back keeps its place)."""
    return line_score(call.priority, call.arrived_at if call.arrived_at is not None else call.created_at)


def _remember(table: dict[str, Any], key: str, value: Any, limit: int = REMEMBERED_CALLS) -> None:
    """Insert as the newest entry; the oldest go beyond `limit` (a bounded memory of calls)."""
    table.pop(key, None)
    table[key] = value
    while len(table) > limit:
        table.pop(next(iter(table)))
