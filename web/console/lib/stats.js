/** Inbound audio statistics of one transceiver (a consulted colleague, a whispering supervisor, a monitored call). */

/** packetsReceived and audioLevel of one transceiver's inbound audio (null without one). */
export async function inboundAudio(pc, transceiver) {
  if (!pc || !transceiver?.receiver) return null;
  const report = await transceiver.receiver.getStats().catch(() => null);
  let found = null;
  report?.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "audio") found = { packetsReceived: r.packetsReceived ?? 0, audioLevel: r.audioLevel ?? null };
  });
  return found ?? { packetsReceived: 0, audioLevel: null };
}
