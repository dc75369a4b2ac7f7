// Server-Sent Events over fetch(). EventSource cannot send an Authorization
// header, and a key in the URL would land in logs, so the stream is read with
// fetch() + a reader and parsed here (the text/event-stream format is small).
// After a drop it reconnects with Last-Event-ID, backing off 0.5 s .. 5 s, so the
// server replays what was missed: nothing lost, nothing repeated. `event: end`
// (an execution's stream after it ended) stops it for good.

import { authHeaders, reportUnauthorized } from "./api.js";
import { setText } from "./dom.js";

const MIN_BACKOFF = 500;
const MAX_BACKOFF = 5000;

/**
 * Follow `path` until stop() is called.
 * handlers: {onEvent(type, data, id), onEnd(data), onOpen(), onDrop(), onFatal(status)}
 * Returns {stop()}.
 */
export function follow(path, handlers) {
  const controller = new AbortController();
  let lastId = null;
  let backoff = MIN_BACKOFF;
  let stopped = false;

  const stop = () => {
    stopped = true;
    controller.abort();
  };

  async function connect() {
    while (!stopped) {
      let ended = false;
      try {
        const headers = { Accept: "text/event-stream", ...authHeaders() };
        if (lastId !== null) headers["Last-Event-ID"] = lastId;
        const response = await fetch(path, { headers, signal: controller.signal, cache: "no-store" });
        if (response.status === 401) {
          reportUnauthorized();
          return;
        }
        if (!response.ok) {
          // 404 (gone or not ours), 403 ...: reconnecting would get the same answer
          if (response.status < 500 && response.status !== 429) {
            handlers.onFatal?.(response.status);
            return;
          }
          throw new Error(`HTTP ${response.status}`);
        }
        handlers.onOpen?.();
        ended = await read(response.body, (frame) => {
          backoff = MIN_BACKOFF;
          if (frame.id !== null) lastId = frame.id;
          if (frame.event === "end") {
            handlers.onEnd?.(frame.data);
            return true;
          }
          handlers.onEvent(frame.event, frame.data, frame.id);
          return false;
        });
      } catch (error) {
        if (stopped || error.name === "AbortError") return;
      }
      if (ended || stopped) {
        controller.abort();
        return;
      }
      handlers.onDrop?.();
      await new Promise((resolve) => setTimeout(resolve, backoff));
      backoff = Math.min(backoff * 2, MAX_BACKOFF);
    }
  }

  connect();
  return { stop };
}

/** Read frames from `body` into `onFrame` until it returns true (end) or the body ends. */
async function read(body, onFrame) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return false;
    buffer += decoder.decode(value, { stream: true });
    if (buffer.includes("\r")) buffer = buffer.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const frame = parseFrame(block);
      if (frame && onFrame(frame)) {
        reader.cancel().catch(() => {});
        return true;
      }
    }
  }
}

/** One frame of lines `field: value`; comments (`: keep-alive`) are skipped. */
/**
 * The handlers that keep a view's "live" indicator (`el`) telling whether its
 * stream is connected, for the views whose stream has nothing else to say about
 * it: spread them into follow()'s handlers.
 */
export function liveIndicator(el) {
  const show = (text, state) => {
    setText(el, text);
    el.className = `live ${state}`;
  };
  return {
    onOpen: () => show("live", "on"),
    onDrop: () => show("reconnecting…", "off"),
    onFatal: (status) => show(`no live updates (HTTP ${status})`, "off"),
  };
}

export function parseFrame(block) {
  let id = null;
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") id = value;
    else if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  let parsed;
  try {
    parsed = JSON.parse(data.join("\n"));
  } catch {
    return null;
  }
  return { id, event, data: parsed };
}
