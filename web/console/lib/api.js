/** The console's REST calls: the HttpOnly session cookie signs them in; errors become CallinError(code, reason). */

import { CallinError } from "../../caller/callin-client.js";

export async function api(path, { method = "GET", body = undefined, headers = {} } = {}) {
  let response;
  try {
    response = await fetch(path, { method, body, headers }); // the session cookie signs the request in
  } catch {
    throw new CallinError("network_error", "Can't reach the gateway.");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new CallinError(data.code || `http_${response.status}`, data.reason || `The gateway answered ${response.status}.`);
  return data;
}

const FILE_ERRORS = {
  attachment_too_large: "That file is too large (5 MB at most).",
  attachment_type: "Only PNG, JPEG, GIF, WebP, PDF and plain text files can be sent.",
  empty_attachment: "That file is empty.",
};

/** Upload a file to the call (the caller can fetch it with its token, staff with their session). */
export async function uploadFile(callId, blob, name) {
  try {
    return await api(`/api/v1/calls/${encodeURIComponent(callId)}/attachments?name=${encodeURIComponent(name)}`, {
      method: "POST",
      body: blob,
      headers: { "Content-Type": "application/octet-stream" },
    });
  } catch (e) {
    throw new CallinError(e.code, FILE_ERRORS[e.code] ?? e.reason);
  }
}
