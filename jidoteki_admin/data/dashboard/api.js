// The Admin API from the browser: the key derived from the token, signed requests, uploads
// with progress, downloads, and readable errors. Every request is signed here and nowhere
// else, and nothing that grants access ever goes into a URL the browser keeps.
//
// API.md section 2: the key is the lowercase hex text of SHA-256(token), used as ASCII
// bytes; each request carries an HTTP Message Signature (RFC 9421, HMAC-SHA256) over its
// method, its URL and, with a body, the body's Content-Digest, made at the appliance's time
// with a fresh nonce, so it cannot be used again. Downloads the browser saves itself go
// through one-time links (POST /downloads). The token itself is never kept and never sent
// again (only as newtoken, when it is changed).

import {blobDigest} from "./sha256.js";
import {LOST} from "./words.js";

export {LOST};
export const PREFIX = "/api/v1/admin";
const STORE = "jidoteki-admin-key";
const REMEMBER_DAYS = 30;
const encoder = new TextEncoder();

/** An answer the API refused, or a connection that failed (status 0). */
export class ApiError extends Error {
  constructor(status, message, firstRun = null) {
    super(message);
    this.status = status;
    this.firstRun = firstRun;
  }
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The secret key of a token: hex(SHA-256(token)). */
export async function deriveKey(token) {
  return hex(await crypto.subtle.digest("SHA-256", encoder.encode(token)));
}

function base64(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)));
}

// The appliance's clock less this browser's, in ms, from the Date of its answers: a
// signature is refused more than 300 s from the appliance's time, and an appliance's
// clock is often not the administrator's.
let skew = 0;

export function noteServerDate(value) {
  const at = value ? Date.parse(value) : NaN;
  if (!Number.isNaN(at)) skew = at - Date.now();
}

const DIGEST_AT_ONCE = 64 * 1024 * 1024;

/** The SHA-256 of a body: at once when small, a slice at a time when large. */
export async function bodyDigest(blob, onProgress = () => {}) {
  if (blob.size <= DIGEST_AT_ONCE) return new Uint8Array(await crypto.subtle.digest("SHA-256", await blob.arrayBuffer()));
  return blobDigest(blob, onProgress);
}

/**
 * The headers that sign a request: Signature-Input and Signature over "@method",
 * "@target-uri" (the absolute URL, as the appliance rebuilds it from the Host it gets) and,
 * for a body (``digest``: its SHA-256), "content-digest" with the Content-Digest header.
 */
export async function signatureHeaders(key, method, target, digest = null, created = null, nonce = null) {
  const headers = {};
  const when = created ?? Math.floor((Date.now() + skew) / 1000);
  const once = nonce ?? hex(crypto.getRandomValues(new Uint8Array(16)));
  const lines = [`"@method": ${method.toUpperCase()}`, `"@target-uri": ${target}`];
  let covered = '"@method" "@target-uri"';
  if (digest !== null) {
    headers["Content-Digest"] = `sha-256=:${base64(digest)}:`;
    lines.push(`"content-digest": ${headers["Content-Digest"]}`);
    covered += ' "content-digest"';
  }
  const params = `(${covered});created=${when};keyid="admin";alg="hmac-sha256";nonce="${once}"`;
  lines.push(`"@signature-params": ${params}`);
  const signing = await crypto.subtle.importKey("raw", encoder.encode(key), {name: "HMAC", hash: "SHA-256"},
    false, ["sign"]);
  const signature = await crypto.subtle.sign("HMAC", signing, encoder.encode(lines.join("\n")));
  headers["Signature-Input"] = `sig=${params}`;
  headers["Signature"] = `sig=:${base64(signature)}:`;
  return headers;
}

/** Text fields and files as a multipart/form-data body, made here so it is known before it
 * is sent (its digest is signed); files stay on disk, read as the body goes. */
export function multipart(fields) {
  const boundary = "jidoteki-admin-" + hex(crypto.getRandomValues(new Uint8Array(12)));
  const quoted = (text) => String(text).replace(/"/g, "%22").replace(/\r/g, "%0D").replace(/\n/g, "%0A");
  const parts = [];
  for (const [name, value] of Object.entries(fields)) {
    if (value instanceof Blob) {
      const filename = value instanceof File ? value.name : `${name}.json`;
      parts.push(`--${boundary}\r\nContent-Disposition: form-data; name="${quoted(name)}"; filename="${quoted(filename)}"\r\n`
        + "Content-Type: application/octet-stream\r\n\r\n", value, "\r\n");
    } else {
      parts.push(`--${boundary}\r\nContent-Disposition: form-data; name="${quoted(name)}"\r\n\r\n${value}\r\n`);
    }
  }
  parts.push(`--${boundary}--\r\n`);
  return {body: new Blob(parts), contentType: `multipart/form-data; boundary=${boundary}`};
}

// What the browser saves itself, through a one-time link, by the endpoint it comes from.
const LINKED = {"/backup/download": "backup", "/logs": "logs", "/debug": "debug"};

// The key: sessionStorage for this tab, or localStorage for 30 days when remembered.

export function storedKey() {
  const session = sessionStorage.getItem(STORE);
  if (session) return session;
  try {
    const kept = JSON.parse(localStorage.getItem(STORE) || "null");
    if (kept && typeof kept.key === "string" && kept.expires > Date.now()) return kept.key;
  } catch {
    // an unreadable entry is forgotten below
  }
  localStorage.removeItem(STORE);
  return null;
}

export function keepKey(key, remember) {
  forgetKey();
  sessionStorage.setItem(STORE, key);
  if (remember) {
    localStorage.setItem(STORE, JSON.stringify({key, expires: Date.now() + REMEMBER_DAYS * 86400 * 1000}));
  }
}

export function forgetKey() {
  sessionStorage.removeItem(STORE);
  localStorage.removeItem(STORE);
}

/** The message of an error answer: the Error-Message header, else the body's, else the status. */
export function errorMessage(status, statusText, header, body) {
  let parsed = null;
  try {
    parsed = body ? JSON.parse(body) : null;
  } catch {
    parsed = null;
  }
  const fromBody = parsed && typeof parsed === "object" ? parsed["Error-Message"] : null;
  const firstRun = parsed && typeof parsed === "object" && typeof parsed["First-Run"] === "boolean"
    ? parsed["First-Run"] : null;
  let text = fromBody || header;
  if (!text) {
    const known = {
      403: "The appliance refused the credentials (authentication error).",
      404: "Not found: this appliance does not serve it, or it does not exist yet.",
      413: "The file is too large for the appliance.",
      507: "The appliance's disk is full.",
    };
    text = known[status] || `The appliance answered ${status} ${statusText || ""}`.trim();
  }
  return new ApiError(status, text, firstRun);
}

/**
 * The client: every call signed with the key it holds. onUnauthorized(error) hears of a
 * 403 to a signed request; onConnection(answered) of every request that got an answer
 * (true) or none at all (false), so the page can say at once that the appliance is gone.
 */
export class Api {
  constructor(key, onUnauthorized = () => {}, onConnection = () => {}) {
    this.key = key;
    this.onUnauthorized = onUnauthorized;
    this.onConnection = onConnection;
  }

  /** The headers of a signed request to an endpoint (a query it carries included). */
  async signed(method, endpoint, digest = null) {
    if (!this.key) return {};
    return signatureHeaders(this.key, method, location.origin + PREFIX + endpoint, digest);
  }

  /** A call; answers the Response when ok, throws ApiError otherwise. ``fields``: a form. */
  async call(method, endpoint, {fields = null, signed = true} = {}) {
    const headers = {};
    let body = null;
    if (fields) {
      const form = multipart(fields);
      body = form.body;
      headers["Content-Type"] = form.contentType;
    }
    if (signed) Object.assign(headers, await this.signed(method, endpoint, body ? await bodyDigest(body) : null));
    let response;
    try {
      response = await fetch(PREFIX + endpoint, {method, body, headers, cache: "no-store", credentials: "omit"});
    } catch {
      this.onConnection(false);
      throw new ApiError(0, LOST);
    }
    this.onConnection(true);
    noteServerDate(response.headers.get("Date"));
    if (!response.ok) {
      const error = errorMessage(response.status, response.statusText, response.headers.get("Error-Message"),
        method === "HEAD" ? "" : await response.text().catch(() => ""));
      if (response.status === 403 && signed) this.onUnauthorized(error);
      throw error;
    }
    return response;
  }

  async json(endpoint) {
    return (await this.call("GET", endpoint)).json();
  }

  async text(endpoint) {
    return (await this.call("GET", endpoint)).text();
  }

  /** GET that answers null on 404 (a file the appliance does not have yet). */
  async optional(endpoint, as = "json") {
    try {
      const response = await this.call("GET", endpoint);
      return as === "json" ? await response.json() : await response.text();
    } catch (error) {
      if (error.status === 404) return null;
      throw error;
    }
  }

  async post(endpoint, fields) {
    const response = await this.call("POST", endpoint, {fields});
    return response.json().catch(() => ({}));
  }

  /** A POST whose upload reports progress: onProgress(sentBytes, totalBytes). A large
   * body is read once first for its digest (onProgress(0, total) meanwhile). */
  async upload(endpoint, fields, onProgress = () => {}) {
    const form = multipart(fields);
    const digest = await bodyDigest(form.body, () => onProgress(0, form.body.size));
    const headers = {"Content-Type": form.contentType, ...await this.signed("POST", endpoint, digest)};
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open("POST", PREFIX + endpoint);
      for (const [name, value] of Object.entries(headers)) request.setRequestHeader(name, value);
      request.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) onProgress(event.loaded, event.total);
      });
      request.addEventListener("load", () => {
        this.onConnection(true);
        noteServerDate(request.getResponseHeader("Date"));
        if (request.status >= 200 && request.status < 300) {
          try {
            resolve(JSON.parse(request.responseText || "{}"));
          } catch {
            resolve({});
          }
          return;
        }
        const error = errorMessage(request.status, request.statusText, request.getResponseHeader("Error-Message"),
          request.responseText);
        if (request.status === 403) this.onUnauthorized(error);
        reject(error);
      });
      request.addEventListener("error", () => {
        this.onConnection(false);
        reject(new ApiError(0, LOST));
      });
      request.addEventListener("abort", () => reject(new ApiError(0, "The upload was cancelled.")));
      request.send(form.body);
    });
  }

  /**
   * Save what a GET answers as a file. Large files (a backup) are checked with HEAD, then
   * saved by the browser from a one-time link (POST /downloads: it works once, for a
   * minute, and grants nothing else), so they never sit in memory and the history keeps
   * nothing of use; files built on request (logs, debug bundle) are fetched, signed, so an
   * error can be shown instead of a broken file.
   */
  async download(endpoint, filename, {stream = false} = {}) {
    let href;
    if (stream && LINKED[endpoint]) {
      await this.call("HEAD", endpoint);
      href = (await this.post("/downloads", {what: LINKED[endpoint]})).url;
    } else {
      const blob = await (await this.call("GET", endpoint)).blob();
      href = URL.createObjectURL(blob);
      setTimeout(() => URL.revokeObjectURL(href), 60000);
    }
    const link = document.createElement("a");
    link.href = href;
    link.download = filename;
    link.hidden = true;
    document.body.append(link);
    link.click();
    link.remove();
  }
}

/** A JSON document as a file for a `settings` field. */
export function jsonFile(value) {
  return new Blob([JSON.stringify(value, null, 2)], {type: "application/json"});
}

/** What the sign-in page needs first, asked without a key (GET /setup/state): whether a
 * token is set and whether first-run is on; null when the appliance does not say. */
export async function setupState() {
  try {
    const response = await fetch(`${PREFIX}/setup/state`, {cache: "no-store", credentials: "omit"});
    noteServerDate(response.headers.get("Date"));
    return response.ok ? await response.json() : null;
  } catch {
    return null;
  }
}
