/**
 * Type declarations for callin-client.js (hand-written; checked against the module by tests/unit/test_js_package.py,
 * which compiles a usage file with `tsc --strict` against these declarations).
 * The wire protocol is docs/protocol.md; the JS package is described in docs/sdk-js.md.
 */

export declare const VERSION: string;
export type CallType = "voice" | "video" | "screen";
export declare const CALL_TYPES: readonly CallType[];

/** An error with a stable `code` (the gateway's codes, plus a few of the client's own). */
export declare class CallinError extends Error {
  constructor(code: string, reason?: string, options?: { retryable?: boolean; detail?: ResumeFailedDetail | Record<string, unknown> | null });
  readonly name: "CallinError";
  code: string;
  reason: string;
  retryable: boolean;
  /** resume_failed: {why, call: {call_id, reason, by} | null} */
  detail: ResumeFailedDetail | Record<string, unknown> | null;
}

export interface ResumeFailedDetail {
  why: "expired" | "closed" | "replaced" | "unknown" | "other_user" | string;
  call: { call_id: string; reason: string; by: string } | null;
}

/** The gateway's base URL (http[s]://host:port) from a URL inside it (e.g. a script's import.meta.url). */
export declare function gatewayOrigin(url: string | URL): string;

/** A message from the gateway: always a `type`; events carry `seq`, responses the request's `id`. */
export interface ServerMessage {
  type: string;
  id?: string | null;
  seq?: number | null;
  [field: string]: unknown;
}

export interface ClientMessage {
  type: string;
  id?: string;
  [field: string]: unknown;
}

/**
 * One WebSocket to the gateway: requests carry an `id` that the response echoes; everything else is an event.
 * Dispatches "message" (detail: the message) and "close" (detail: {code, reason}).
 */
export declare class Signaling extends EventTarget {
  constructor(url: string);
  readonly url: string;
  readonly open: boolean;
  connect(timeoutMs?: number): Promise<void>;
  nextId(): string;
  /** Send without waiting; false when the socket is not open. */
  send(message: ClientMessage): boolean;
  /** Send a request and wait for its response; an `error` response rejects with a CallinError. */
  request<T extends ServerMessage = ServerMessage>(message: ClientMessage, timeoutMs?: number): Promise<T>;
  close(code?: number, reason?: string): void;
  addEventListener(type: "message", listener: (event: CustomEvent<ServerMessage>) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: "close", listener: (event: CustomEvent<{ code: number; reason: string }>) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
}

export interface WireIceServer {
  urls: string[];
  username?: string | null;
  credential?: string | null;
}

/** RTCConfiguration.iceServers from the welcome message's ice_servers. */
export declare function iceServersFrom(list: WireIceServer[] | null | undefined): RTCIceServer[];
/** Put `mimeType` (e.g. "video/VP8") first in a transceiver's codec list, when the browser allows it. */
export declare function preferCodec(transceiver: RTCRtpTransceiver, mimeType: string): boolean;

export interface CandidateMessage {
  type: "ice.candidate";
  call_id?: string;
  candidate: string | null;
  sdp_mid: string | null;
  sdp_mline_index: number | null;
}
/** The protocol's ice.candidate for a trickled candidate (null: end of candidates), or null for an mDNS one. */
export declare function candidateMessage(candidate: RTCIceCandidate | null, callId?: string | null): CandidateMessage | null;

export interface InboundStats {
  packetsReceived: number;
  packetsLost: number;
  bytesReceived: number;
  jitterMs: number | null;
  audioLevel?: number | null;
  framesDecoded?: number;
  frameWidth?: number;
  frameHeight?: number;
  framesPerSecond?: number | null;
  keyFramesDecoded?: number;
}
export interface OutboundStats {
  packetsSent: number;
  bytesSent: number;
  framesEncoded?: number;
  frameWidth?: number;
  frameHeight?: number;
  framesPerSecond?: number | null;
  qualityLimitationReason?: string | null;
}
export interface StatsSummary {
  at: number;
  rttMs: number | null;
  audioIn: InboundStats | null;
  videoIn: InboundStats | null;
  audioOut: OutboundStats | null;
  videoOut: OutboundStats | null;
  lossPct: number;
  inKbps: number | null;
  outKbps: number | null;
  videoFps: number | null;
  videoFlowing: boolean;
  audioFlowing: boolean;
  quality: "good" | "fair" | "poor";
}
/** A small summary of getStats(): what arrives and leaves, RTT, and (given the previous one) loss and rates. */
export declare function summarizeStats(pc: RTCPeerConnection, previous?: StatsSummary | null): Promise<StatsSummary>;
/** Maps a getUserMedia/getDisplayMedia failure to a CallinError with a stable code. */
export declare function mediaError(err: unknown, what?: string): CallinError;

export declare const AUDIO_CONSTRAINTS: Readonly<MediaTrackConstraints>;
export declare const CAMERA_CONSTRAINTS: Readonly<MediaTrackConstraints>;
export declare const SCREEN_CONSTRAINTS: Readonly<MediaTrackConstraints>;

/** The protocol's Location object (device-reported). */
export interface DeviceLocation {
  lat: number;
  lon: number;
  accuracy_m: number;
  timestamp: number;
}
export interface LocationResult {
  location: DeviceLocation | null;
  status: "shared" | "denied" | "unavailable" | "timeout" | "unsupported";
}
/** The device's position with the user's consent; never throws. */
export declare function getDeviceLocation(options?: { timeoutMs?: number; maximumAgeMs?: number; highAccuracy?: boolean }): Promise<LocationResult>;

/** The protocol's Context object: what the caller was doing in the app. */
export interface CallContext {
  screen?: string | null;
  steps?: string[];
  crm?: Record<string, string | number | boolean | null>;
}
/** Drop what the gateway would refuse: unknown keys, over-long strings, nested CRM values. */
export declare function cleanContext(context: unknown): CallContext;

export type RecordingState = "off" | "asking" | "pending" | "recording" | "paused" | "declined" | "stopped" | "failed";
export type ClientState = "idle" | "connecting" | "ready" | "starting" | "queued" | "connected" | "ended" | "callback";
export type VideoSource = "camera" | "screen" | null;

export interface AcquiredMedia {
  audio: MediaStreamTrack | null;
  video: MediaStreamTrack | null;
  source: VideoSource;
  /** A video call that goes on without its camera: why (sent to the gateway as media.source reason). */
  missing?: "camera_blocked" | "camera_unavailable" | null;
}

export interface QueueInfo {
  position: number;
  queueLength: number;
  estimatedWaitS: number | null;
}

export interface CallEnd {
  reason: string;
  by: string;
  durationS: number | null;
  callId: string | null;
}

export interface ClosedNotice {
  reason: string;
  message: string;
  queue: string;
  callbackAvailable: boolean;
  messageAllowed: boolean;
  opensAt: number | null;
}

/** What content.pushed carries (docs/protocol.md, Content object). */
export interface PushedContent {
  content_id: string;
  kind: "link" | "image" | "text";
  title?: string;
  url?: string;
  text?: string;
  attachment: Attachment | null;
  by: string;
  at: number;
  status: string;
}

export interface Attachment {
  id: string;
  call_id: string;
  name: string;
  mime: string;
  size: number;
  sha256: string;
  uploaded_by: string;
  at: number;
  url: string;
}

export interface ChatLine {
  message_id: string;
  from: { role: "caller" | "agent" | "supervisor"; name: string | null; username?: string };
  text: string | null;
  attachment: Attachment | null;
  at: number;
}

/** The `detail` of each event CallinClient dispatches (CustomEvent). */
export interface CallinClientEventMap {
  statechange: { state: ClientState; previous: ClientState };
  queue: QueueInfo;
  answered: { agentName: string; callId: string; transferred?: boolean; rejoined?: boolean };
  ended: CallEnd;
  error: { error: CallinError; fatal: boolean };
  reconnecting: { attempt: number; graceS: number; until: number };
  reconnected: { resumed: boolean; replayed: number; complete: boolean };
  localstream: { stream: MediaStream };
  remotetrack: { track: MediaStreamTrack; stream: MediaStream; slot: "main" | "aux" };
  participant: { state: "reconnecting" | "reconnected"; role: string; name: string | null; cause: "socket" | "media" };
  /** The call's media is being set up again with a new peer connection, in the same call (a network change). */
  mediarecovering: { cause: string; attempt: number };
  mediarecovered: { cause: string; ms: number };
  shutdown: { reason: string; retryAfterS: number; resume: boolean };
  mediastate: { state: RTCPeerConnectionState };
  videosource: { source: VideoSource };
  gatewaymedia: { state: string };
  videopaused: { paused: boolean; reason: string };
  devicewarning: { code: string; reason: string; missing: "camera_blocked" | "camera_unavailable" | null };
  ringing: { ringing: boolean; agentName: string | null };
  barge: { active: boolean; name: string | null; barging: string[] };
  /** The call's recording state (recording.state): "asking" wants recordingConsent(true | false). */
  recording: { state: RecordingState; policy: "off" | "on_demand" | "always"; consent: "notify" | "ask"; by: string | null };
  transcript: { active: boolean; captions: boolean };
  caption: { speaker: { role: "caller" | "agent" | "supervisor" | "colleague"; name: string }; utterance: number; text: string; final: boolean };
  mute: { muted: boolean };
  held: { held: boolean };
  transferring: { mode: string };
  closed: ClosedNotice;
  callbackoffer: { estimatedWaitS: number | null; queue: string };
  callbackaccepted: { position: number | null; callId: string | null };
  callbackready: { callId: string; agentName: string; rejoinWithinS: number; at: number };
  rejoined: { callId: string; agentName: string | null };
  interrupted: { callId: string; rejoinedCallId: string; reason: "node_lost" };
  content: { content: PushedContent };
  chat: { message: ChatLine };
}

export interface CallinClientOptions {
  /** The gateway's base URL (default: where this module was loaded from). */
  gateway?: string;
  /** Returns a caller token signed by your backend (or an object with a `token`). */
  getToken?: () => Promise<string | { token: string }> | string | { token: string };
  /** A token, instead of getToken. */
  token?: string;
  /** Make the next call's peer connection ahead of the click (default true; see CallinClient.prepare). */
  prepare?: boolean;
}

export interface StartCallOptions {
  callType?: CallType;
  location?: DeviceLocation | null;
  context?: CallContext;
  /** Acquired beforehand, or acquireMedia()'s promise: the call then starts while the devices start when the
   * browser will not ask for them (startsBeforeMedia), else it waits for them. */
  media?: AcquiredMedia | Promise<AcquiredMedia> | null;
}

/** The caller's side of a Callin call, with no UI (the widget is built on it). */
export declare class CallinClient extends EventTarget {
  constructor(options: CallinClientOptions);
  gateway: string;
  state: ClientState;
  callId: string | null;
  callType: CallType | null;
  agentName: string | null;
  queue: QueueInfo | null;
  identity: Record<string, unknown> | null;
  muted: boolean;
  videoSource: VideoSource;
  localStream: MediaStream;
  remoteStream: MediaStream;
  lastEnd: CallEnd | null;
  held: boolean;
  transferring: boolean;
  closedNotice: ClosedNotice | null;
  callback: { position?: number | null; ready?: CallinClientEventMap["callbackready"] } | null;
  agentReconnecting: boolean;
  /** The agent the waiting call rings at now (call.ringing), or null. */
  ringingAgent: string | null;
  /** The call's recording (recording.state), or null when nothing was said about it. */
  recording: { callId: string; state: RecordingState; policy: string; consent: string } | null;
  /** The call is transcribed (transcript.notice). */
  transcribed: boolean;
  /** Names of the supervisors speaking in the call now (call.barge). */
  barging: string[];
  /** How long the gateway keeps a call whose socket dropped (welcome.resume_grace_s), in seconds. */
  readonly resumeGraceS: number;
  /** The seq of the last event processed on this session (0: none yet). */
  readonly lastSeq: number;
  readonly reconnecting: boolean;
  readonly peerConnection: RTCPeerConnection | null;
  readonly cameraOn: boolean;
  readonly answeredAt: number | null;

  /** Get a token, open the caller WebSocket and say hello; resolves with the welcome. */
  connect(): Promise<ServerMessage>;
  acquireMedia(callType: CallType): Promise<AcquiredMedia>;
  /** Make the next call's peer connection (transceivers, offer, ICE candidates) ahead of the click, with no device
   * and nothing sent; done by itself whenever the client becomes ready. Resolves true once an offer is ready. */
  prepare(): Promise<boolean>;
  /** Whether startCall({media: acquireMedia(...)}) starts the call while the devices start (they are allowed on
   * this site already; never for screen sharing). */
  startsBeforeMedia(callType: CallType): boolean;
  /** Resolves with the call.queued message once queued (null when hung up while starting). */
  startCall(options?: StartCallOptions): Promise<ServerMessage | null>;
  /** Send the device's location for the current call after startCall (call.location), e.g. when
   * getDeviceLocation() answers after the click; while startCall is on its way it is sent once the call has its id.
   * Once per call (location_already_set otherwise). Resolves with the ack. */
  sendLocation(location: DeviceLocation): Promise<ServerMessage>;
  setMuted(muted: boolean): void;
  useCamera(): Promise<void>;
  cameraOff(): Promise<void>;
  setCamera(on: boolean): Promise<void>;
  shareScreen(): Promise<void>;
  stopScreen(): Promise<void>;
  requestCallback(options?: { phone?: string | null }): Promise<ServerMessage>;
  /** Answer the "asking" of a recording event: true lets the call be recorded, false declines. */
  recordingConsent(accept: boolean): Promise<ServerMessage>;
  leaveMessage(text: string): Promise<void>;
  rejoin(options?: { callId?: string; callType?: CallType; media?: AcquiredMedia | null }): Promise<ServerMessage>;
  sendChat(options?: { text?: string | null; file?: Blob | null; name?: string | null }): Promise<Attachment | null>;
  uploadAttachment(blob: Blob, name?: string): Promise<Attachment>;
  fetchAttachment(url: string): Promise<Blob>;
  reportContent(contentId: string, status: "seen" | "opened" | "dismissed"): Promise<ServerMessage | null>;
  hangup(): Promise<void>;
  getStats(previous?: StatsSummary | null): Promise<StatsSummary | null>;
  /** Set the call's media up again with a new peer connection in the same call (done by itself on failures and
   * network events); resolves true once the new one is answered. */
  recoverMedia(cause?: string): Promise<boolean>;
  close(): Promise<void>;

  addEventListener<K extends keyof CallinClientEventMap>(type: K, listener: (event: CustomEvent<CallinClientEventMap[K]>) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof CallinClientEventMap>(type: K, listener: (event: CustomEvent<CallinClientEventMap[K]>) => void, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}
