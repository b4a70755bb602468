"""The record schema, one for SQLite and PostgreSQL. Times are UNIX seconds (float), as on the wire.

Changing a table here needs a migration in gateway/store/migrations/versions/.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class UserRow(Base):
    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(128), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[float] = mapped_column(Float)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    skills: Mapped[list[str]] = mapped_column(JSON, default=list)
    capacity: Mapped[int] = mapped_column(Integer, default=1)


class SignInRow(Base):
    """A server-side agent session (sign-in): ended by sign-out, a password change or an admin."""

    __tablename__ = "signin_sessions"
    __table_args__ = (Index("ix_signin_sessions_username", "username"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(String(128))
    secret_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)  # moved forward by refresh, never past ends_at
    ends_at: Mapped[float] = mapped_column(Float)  # the absolute end
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    secret_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_used_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class CallRow(Base):
    __tablename__ = "calls"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject: Mapped[str] = mapped_column(String(256), index=True)
    identity: Mapped[dict[str, Any]] = mapped_column(JSON)
    location: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    call_type: Mapped[str] = mapped_column(String(16))
    queue: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16))
    agent: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    agents: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float, index=True)
    queued_at: Mapped[float] = mapped_column(Float)
    offered_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    answered_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    wait_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    talk_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    end_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    hangup_side: Mapped[str | None] = mapped_column(String(16), nullable=True)
    disposition: Mapped[str | None] = mapped_column(String(64), nullable=True)
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    wrapped_up_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    wrapped_up_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    node: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # the node instance (NodeRow.id) that writes this record while it is open: its lease decides when a crash
    # has orphaned it (see gateway/store/nodes.py)
    node_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    closed_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    callback: Mapped[bool] = mapped_column(Boolean, default=False)
    callback_phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    callback_ready_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    rejoined_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # sha256 of the caller session's resume token (never the token): a waiting call whose node restarted or crashed
    # is restored and its caller resumes in place with the token it holds (see gateway/store/nodes.py)
    caller_resume: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # the call's recording (gateway/recording.py): its state at the last snapshot (off, declined, stopped, ...;
    # deleted once retention removed the file) and the paused spans [[start, end], ...] in UNIX seconds
    recording: Mapped[str | None] = mapped_column(String(16), nullable=True)
    recording_paused: Mapped[list[list[float | None]] | None] = mapped_column(JSON, nullable=True)


class NodeRow(Base):
    """One row per server process start: the owner of the call records it opens, alive while its lease holds.

    A node renews `heartbeat_at` every few seconds; once `heartbeat_at + lease_s` has passed (a crash) or it has
    stopped, any node closes the records it left open (and restores its callback requests) and sets `reaped_by`.
    """

    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[float] = mapped_column(Float)
    heartbeat_at: Mapped[float] = mapped_column(Float)
    lease_s: Mapped[float] = mapped_column(Float)
    stopped_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    reaped_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reaped_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class QueueRow(Base):
    """Queues created or changed through the admin API (they override the settings file's queue of that name)."""

    __tablename__ = "queues"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[float] = mapped_column(Float)
    updated_by: Mapped[str | None] = mapped_column(String(128), nullable=True)


class CallEventRow(Base):
    __tablename__ = "call_events"
    __table_args__ = (UniqueConstraint("call_id", "seq"), Index("ix_call_events_call", "call_id", "seq"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(32), ForeignKey("calls.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class TranscriptSegmentRow(Base):
    """One final, redacted segment of a call's live transcript (gateway/engine/transcripts.py)."""

    __tablename__ = "transcript_segments"
    __table_args__ = (UniqueConstraint("call_id", "seq"), Index("ix_transcript_segments_call", "call_id", "seq"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(32), ForeignKey("calls.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    participant: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(256))
    utterance: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    at: Mapped[float] = mapped_column(Float)


class WebhookRow(Base):
    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[float] = mapped_column(Float)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class WebhookDeliveryRow(Base):
    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(String(32), ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    delivery_id: Mapped[str] = mapped_column(String(32), index=True)
    event: Mapped[str] = mapped_column(String(32))
    call_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[float] = mapped_column(Float)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(String(512), nullable=True)
    duration_ms: Mapped[float | None] = mapped_column(Float, nullable=True)


class RecordingRow(Base):
    """One recorded call's file (one file per call): where it is, what it holds, its checksum; kept (marked
    deleted) after retention removed the file."""

    __tablename__ = "recordings"

    call_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    storage_key: Mapped[str] = mapped_column(String(512))
    container: Mapped[str] = mapped_column(String(16))
    queue: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    agent: Mapped[str | None] = mapped_column(String(128), nullable=True)
    started_at: Mapped[float] = mapped_column(Float, index=True)
    duration_s: Mapped[float] = mapped_column(Float)
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    tracks: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    paused_spans: Mapped[list[list[float]]] = mapped_column(JSON)  # seconds from the file's start
    created_at: Mapped[float] = mapped_column(Float)
    deleted_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    deleted_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


class RecordingAccessRow(Base):
    """The audit log of recordings: every read of one (metadata, download, playback), by whom, when, from where."""

    __tablename__ = "recording_access"
    __table_args__ = (Index("ix_recording_access_call", "call_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(32))
    at: Mapped[float] = mapped_column(Float)
    principal: Mapped[str] = mapped_column(String(128))  # username, or "key:<id>" for an API key
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))  # metadata, download
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    byte_range: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[int] = mapped_column(Integer)


class AttachmentRow(Base):
    """A file exchanged in a call (chat attachment, pushed picture, snapshot) when files are kept in the database
    (gateway/store/attachments.py, `DatabaseAttachments`): readable from every node of a cluster. Its bytes are in
    `attachment_chunks`. No foreign key to `calls`: a file outlives nothing but its retention time."""

    __tablename__ = "attachments"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(128))
    mime: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_by: Mapped[str] = mapped_column(String(128))
    at: Mapped[float] = mapped_column(Float, index=True)
    owner: Mapped[str | None] = mapped_column(String(520), nullable=True, index=True)  # a caller's issuer|subject
    scan: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class AttachmentChunkRow(Base):
    """A piece of an attachment's bytes (at most CHUNK_BYTES each, in order of `seq`), so that neither a write nor
    a download holds a whole large file in one value."""

    __tablename__ = "attachment_chunks"

    attachment_id: Mapped[str] = mapped_column(String(16), ForeignKey("attachments.id", ondelete="CASCADE"),
                                               primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
