// Following a job the API runs in the background: poll its GET until it is no longer running.

import {h, badge, fill, sleep} from "./dom.js";

/**
 * Poll `endpoint` every `everyMs` while the page is shown; onStatus(answer) for each answer,
 * onError(error) for a failed poll. Resolves with the last answer once it is not running.
 */
export async function follow(api, endpoint, {onStatus, onError = () => {}, everyMs = 1000, isStopped = () => false}) {
  let last = null;
  while (!isStopped()) {
    try {
      last = await api.json(endpoint);
      onStatus(last);
      if (last?.status !== "running") return last;
    } catch (error) {
      onError(error);
      if (error.status === 403) return last;
    }
    await sleep(everyMs);
  }
  return last;
}

/** The status line of a job answer: badge, and the error code and message when it failed. */
export function statusLine(answer) {
  const failure = answer?.status === "failed" && (answer["error-code"] || answer["error-message"])
    ? h("span", {class: "failure"},
      [answer["error-code"], answer["error-message"]].filter(Boolean).join(": "))
    : null;
  return h("p", {class: "status-line"}, "Status: ", badge(answer?.status), failure);
}

/** The log lines of a job's status answer: the API writes each newline as the two
 * characters backslash and n, as the original did. */
export function statusLog(answer) {
  return (answer?.log || "").replaceAll("\\n", "\n");
}

/** A log tail box that follows its content. */
export function logBox(label = "Log") {
  const pre = h("pre", {class: "log", "aria-label": label, tabindex: "0"});
  pre.set = (text) => {
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    fill(pre, text || "");
    pre.hidden = !text;
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  };
  pre.hidden = true;
  return pre;
}

/** A link-style button that fills `log` with the whole log at `path`; a failure goes to `slot`. */
export function showLogButton(api, path, label, log, slot) {
  const button = h("button", {type: "button", class: "link"}, label);
  button.addEventListener("click", async () => {
    try {
      log.set(await api.text(path));
    } catch (error) {
      slot.show("error", error.message);
    }
  });
  return button;
}
