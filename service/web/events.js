// Server-sent events read with fetch() rather than EventSource, so that the request goes
// through the API wrapper and carries the sign-in token when the server asks for one.
import { ApiError, send } from "./lib.js";

// Read `path` until the server ends the stream or `signal` aborts it; `onEvent(name, data)`
// gets each event, its data parsed as JSON (the raw text if it is not JSON). `lastEventId`
// resumes after that event.
export async function readEvents(path, onEvent, signal, lastEventId = null) {
  const headers = { accept: "text/event-stream" };
  if (lastEventId) headers["last-event-id"] = lastEventId;
  const response = await send(path, { headers, signal });
  if (!response.ok) throw new ApiError(response.status, response.statusText);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = parseBlock(block);
      if (event) await onEvent(event.name, event.data);
    }
  }
}

// One event block: "event: name" and "data: ..." lines; comments (":") and ids ignored.
function parseBlock(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    const colon = line.indexOf(":");
    if (colon === 0) continue;
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  const text = data.join("\n");
  try { return { name, data: JSON.parse(text) }; } catch (_) { return { name, data: text }; }
}
