// A transcript message as what it is: reply buttons as chips, a list as its button
// with its sections and rows, media as a link (an https image as a small thumbnail),
// a location as its name, address and a map link; on the contact's side, a tapped
// button or row as its title with a marker and the id it carries back.
//
// Every value here is the contact's, the flow author's or a service's, so nothing is
// parsed as HTML (h() sets textContent), and a URL becomes a link or an image only
// when it is http(s): `javascript:` or `data:` from a message never reaches an href
// or a src. Thumbnails load only over https (the page's CSP allows https: images and
// nothing else foreign), with no referrer, and fall back to the link if they fail.
// The buttons and rows are shown, not offered: this is a record of what was said, so
// they are list items, never controls.

import { h, svg } from "./dom.js";

/** The body of a transcript entry (without its "who" and its time). */
export function messageBody(entry) {
  const content = entry.content;
  if (!content || typeof content !== "object") return [text(entry.text)];
  return entry.from === "contact" ? contactBody(entry, content) : botBody(entry, content);
}

/** `url` as an absolute http(s) address, or null for anything else. */
export function httpUrl(url) {
  if (typeof url !== "string" || !url) return null;
  try {
    const parsed = new URL(url);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

/** The map link the terminal prints too (trilha.core.content.map_link). */
export function mapLink(latitude, longitude) {
  const lat = Number(latitude);
  const lon = Number(longitude);
  if (!Number.isFinite(lat) || !Number.isFinite(lon) || Math.abs(lat) > 90 || Math.abs(lon) > 180) return null;
  return `https://www.google.com/maps/search/?api=1&query=${lat.toFixed(6)}%2C${lon.toFixed(6)}`;
}

// ------------------------------------------------------------------ the bot's side

function botBody(entry, content) {
  const parts = [];
  if (content.header) parts.push(h("p.msg-header", { text: content.header }));
  const said = content.text ?? "";
  switch (content.type) {
    case "buttons":
      parts.push(text(said), buttons(content.buttons));
      break;
    case "list":
      parts.push(text(said), list(content.list));
      break;
    case "media":
      if (said) parts.push(text(said));
      parts.push(media(content.media));
      break;
    case "location":
      if (said) parts.push(text(said));
      parts.push(place(content.location));
      break;
    case "template":
      // outside WhatsApp's 24-hour window: the template Meta approved went instead
      parts.push(text(said || entry.text));
      parts.push(h("p.degraded", { text: `sent as the WhatsApp template '${content.template?.name ?? "?"}': the contact last wrote over 24 hours before` }));
      break;
    case "text":
      parts.push(text(said || entry.text));
      // a plain text that carries its template (the window's alternative) was not degraded
      if (content.template && !(Array.isArray(content.options) && content.options.length)) break;
      // what the channel could not show, sent as text: its options numbered in it
      parts.push(
        h("p.degraded", {
          text: Array.isArray(content.options) && content.options.length ? "sent as numbered options: the channel shows text only" : "sent as text: the channel could not show it",
        }),
      );
      break;
    default:
      parts.push(text(entry.text));
  }
  if (content.footer) parts.push(h("p.msg-footer", { text: content.footer }));
  return parts;
}

function buttons(items) {
  const shown = Array.isArray(items) ? items : [];
  return h(
    "ul.reply-buttons",
    { "aria-label": "Reply buttons" },
    shown.map((b) => h("li.chip", { title: `reply id: ${b.id}`, dataset: { id: String(b.id ?? "") } }, h("span.chip-title", { text: b.title ?? "" }))),
  );
}

function list(spec) {
  if (!spec || typeof spec !== "object") return null;
  const sections = Array.isArray(spec.sections) ? spec.sections : [];
  return h(
    "div.list-msg",
    {},
    h("p.list-button", {}, h("span.glyph", { "aria-hidden": "true", text: "☰" }), h("span", { text: spec.button ?? "" })),
    sections.map((section, i) =>
      h(
        "div.list-section",
        {},
        section.title ? h("p.section-title", { text: section.title }) : null,
        h(
          "ul.rows",
          { "aria-label": section.title ? `List: ${section.title}` : sections.length > 1 ? `List section ${i + 1}` : "List" },
          (Array.isArray(section.rows) ? section.rows : []).map((row) =>
            h(
              "li.row",
              { dataset: { id: String(row.id ?? "") } },
              h("span.row-title", { text: row.title ?? "" }),
              row.description ? h("span.row-description", { text: row.description }) : null,
              h("code.opt-id", { title: "the id a reply carries back", text: row.id ?? "" }),
            ),
          ),
        ),
      ),
    ),
  );
}

// ------------------------------------------------------------------ the contact's side

const REPLY_KIND = { button: "button", list: "list row" };

function contactBody(entry, content) {
  switch (content.type) {
    case "button":
    case "list":
      return [
        h(
          "p.reply",
          { dataset: { reply: content.type } },
          h("span.reply-kind", { text: `↩ ${REPLY_KIND[content.type]}` }),
          h("span.reply-title", { text: content.text ?? entry.text ?? "" }),
          content.replyId ? h("code.opt-id", { title: "the id the reply carries", text: content.replyId }) : null,
        ),
        language(content),
      ];
    case "media":
      return [media(content.media), language(content)];
    case "location":
      return [place(content.location), language(content)];
    default:
      return [text(content.text ?? entry.text), language(content)];
  }
}

function language(content) {
  return content.language ? h("span.lang", { title: "the contact's language", text: content.language }) : null;
}

// ------------------------------------------------------------------ shared

function text(value) {
  return h("p.text", { text: value ?? "" });
}

function media(m) {
  if (!m || typeof m !== "object") return null;
  const kind = String(m.kind || "media");
  const href = httpUrl(m.url);
  const name = m.filename || m.url || "";
  const label = h("span.media-kind", { text: kind });
  const link = href
    ? h("a.media-link", { href, target: "_blank", rel: "noopener noreferrer", title: m.url, text: name })
    : h("span.media-link.mono", { title: "not an http(s) link", text: name });
  const figure = h("figure.media", { dataset: { kind } });
  const thumbnail = (kind === "image" || kind === "sticker") && href && href.startsWith("https:") ? thumb(href, m.caption || `${kind} sent`, figure) : null;
  figure.append(
    ...[
      thumbnail,
      h("figcaption", {}, label, link, m.mimeType ? h("span.muted.mime", { text: m.mimeType }) : null),
      m.caption ? h("p.caption", { text: m.caption }) : null,
    ].filter(Boolean),
  );
  return figure;
}

function thumb(href, alt, figure) {
  const img = h("img.thumb", { src: href, alt, loading: "lazy", decoding: "async", referrerpolicy: "no-referrer" });
  // a link that does not load (gone, private, not an image) leaves the link shown
  img.addEventListener("error", () => {
    img.remove();
    figure.classList.add("thumb-failed");
  });
  return h("a.thumb-link", { href, target: "_blank", rel: "noopener noreferrer", title: "open the image" }, img);
}

function place(loc) {
  if (!loc || typeof loc !== "object") return null;
  const link = mapLink(loc.latitude, loc.longitude);
  return h(
    "div.place",
    {},
    pin(),
    h(
      "div",
      {},
      loc.name ? h("p.place-name", { text: loc.name }) : null,
      loc.address ? h("p.place-address", { text: loc.address }) : null,
      h("p.coords.mono", { text: `${loc.latitude}, ${loc.longitude}` }),
      link ? h("a.map-link", { href: link, target: "_blank", rel: "noopener noreferrer", text: "Open in a map" }) : null,
    ),
  );
}

/** A map pin, drawn (no emoji font is needed to show it). */
function pin() {
  return svg(
    "svg",
    { class: "pin", viewBox: "0 0 24 24", width: 16, height: 16, "aria-hidden": "true", focusable: "false" },
    svg("path", { fill: "currentColor", d: "M12 2C8.1 2 5 5.1 5 9c0 5.2 7 13 7 13s7-7.8 7-13c0-3.9-3.1-7-7-7zm0 9.5a2.5 2.5 0 1 1 0-5 2.5 2.5 0 0 1 0 5z" }),
  );
}
