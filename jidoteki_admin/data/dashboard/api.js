// The Admin API from the browser: the key derived from the token, signed requests, uploads
// with progress, downloads, and readable errors. Every request and every download link is
// signed here and nowhere else.
//
// API.md section 2: the key is the lowercase hex text of SHA-256(token), used as ASCII
// bytes; each request carries ?hash=HMAC-SHA256(key, METHOD + path). The token itself is
// never kept and never sent again (only as newtoken, when it is changed).

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

/** The hash of a request: hex(HMAC-SHA256(key as ASCII, METHOD + path)); HEAD signs as GET. */
export async function requestHash(key, method, path) {
  const signing = await crypto.subtle.importKey("raw", encoder.encode(key), {name: "HMAC", hash: "SHA-256"},
    false, ["sign"]);
  const signed = method.toUpperCase() === "HEAD" ? "GET" : method.toUpperCase();
  return hex(await crypto.subtle.sign("HMAC", signing, encoder.encode(signed + path)));
}

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

  /** The signed URL of an endpoint; a query it carries is kept, the hash covers the path only. */
  async url(method, endpoint) {
    const [bare, query] = endpoint.split("?", 2);
    const path = PREFIX + bare;
    const before = query ? `${path}?${query}` : path;
    if (!this.key) return before;
    return `${before}${query ? "&" : "?"}hash=${await requestHash(this.key, method, path)}`;
  }

  /** A call; answers the Response when ok, throws ApiError otherwise. */
  async call(method, endpoint, {form = null, signed = true} = {}) {
    const url = signed ? await this.url(method, endpoint) : PREFIX + endpoint;
    let response;
    try {
      response = await fetch(url, {method, body: form, cache: "no-store", credentials: "omit"});
    } catch {
      this.onConnection(false);
      throw new ApiError(0, LOST);
    }
    this.onConnection(true);
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
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) form.append(name, value);
    const response = await this.call("POST", endpoint, {form});
    return response.json().catch(() => ({}));
  }

  /** A POST whose upload reports progress: onProgress(sentBytes, totalBytes). */
  async upload(endpoint, fields, onProgress = () => {}) {
    const url = await this.url("POST", endpoint);
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) {
      if (value instanceof Blob && !(value instanceof File)) form.append(name, value, `${name}.json`);
      else form.append(name, value);
    }
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open("POST", url);
      request.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) onProgress(event.loaded, event.total);
      });
      request.addEventListener("load", () => {
        this.onConnection(true);
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
      request.send(form);
    });
  }

  /**
   * Save what a GET answers as a file. Large files (a backup) are checked with HEAD, then
   * saved by the browser from a signed link, so they never sit in memory; files built on
   * request (logs, debug bundle) are fetched, so an error can be shown instead of a broken file.
   */
  async download(endpoint, filename, {stream = false} = {}) {
    let href;
    if (stream) {
      await this.call("HEAD", endpoint);
      href = await this.url("GET", endpoint);
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
    return response.ok ? await response.json() : null;
  } catch {
    return null;
  }
}
