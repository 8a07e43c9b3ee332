// A job the appliance runs, as GET /jobs/<name> and /jobs/<name>/log tell it: its status,
// progress, times and failure, and its log read whole, line by line, never mixing runs.
// Every job-backed page shows one: what it shows is the appliance's state, not what the page
// assumes after asking for something.

import {h, fill, progress, message} from "./dom.js";
import {duration, readableLogLine, when, ago} from "./format.js";
import {jobFailure} from "./words.js";

const RUNNING_MS = 1000;
const LOG_LINES_KEPT = 2000;

/** A badge with the status in words (the colour only repeats them). */
export function badge(status, words = {}) {
  const known = ["running", "success", "failed"].includes(status);
  const text = {running: "Running", success: "Succeeded", failed: "Failed", ...words}[status] || words.none || "Never run";
  return h("span", {class: `badge badge-${known ? status : "none"}`}, text);
}

/** A log box: lines with readable times, scrolled to the end unless the reader scrolled up. */
export function logBox(label = "Log") {
  const pre = h("pre", {class: "log", "aria-label": label, tabindex: "0"});
  let lines = [];
  pre.setLines = (all) => {
    lines = all;
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    fill(pre, lines.map((line) => readableLogLine(line)).join("\n"));
    pre.hidden = lines.length === 0;
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  };
  pre.add = (more) => pre.setLines([...lines, ...more].slice(-LOG_LINES_KEPT));
  pre.hidden = true;
  return pre;
}

/**
 * The panel of one kind of job. words: {title, running, success, failed, none} say what a
 * run of it is in this page's terms ("Installing the update", "The update is installed").
 * onEnd(state) hears of a run this panel saw running and then end; onState(state) of every
 * state read.
 */
export function jobPanel(api, name, words, {onEnd = () => {}, onState = () => {}, jobs = null, onLeave = null} = {}) {
  let state = null;
  let logRun = null;
  let next = 0;
  let lines = [];
  let following = false;
  let stopped = false;
  let seenRunning = null; // the run this panel saw running: its end is news, announced
  let announced = null; // the run whose end was announced (once)
  const status = h("div", {class: "job-head"});
  const times = h("p", {class: "job-times muted"});
  const bar = progress(words.title || "Progress");
  bar.hidden = true;
  const result = h("div", {class: "job-result", role: "status"});
  const log = logBox(`${words.title || "Job"} log`);
  const logToggle = h("details", {class: "job-log"}, h("summary", {}, "Log"), log);
  const element = h("div", {class: "job", "data-job": name}, status, times, bar, result, logToggle);

  function render(news) {
    const current = state?.status ?? null;
    fill(status, h("span", {class: "job-title"}, words.title || "Last run"), badge(current, {none: words.never}));
    if (!state || !state.run) {
      times.textContent = words.none || "It has not run yet.";
    } else if (current === "running") {
      times.textContent = `Started ${when(state.started)}; running for ${duration(state.seconds)}.`;
    } else {
      times.textContent = `Started ${when(state.started)}, took ${duration(state.seconds)}; ended ${ago(state.ended)}.`;
    }
    bar.hidden = current !== "running";
    if (current === "running") {
      const percent = typeof state.percentage === "number" ? state.percentage : 0;
      bar.set(percent, `${words.running || "Running"}: ${percent} %`);
    }
    // The outcome stays shown for as long as it is the last run's: a failure is not
    // forgotten because the page was left or reloaded.
    if (current === "failed") {
      fill(result, message("error", h("strong", {}, `${words.failed || "It failed"}. `), jobFailure(state)));
    } else if (current === "success" && news) {
      fill(result, message("success", words.success || "Done."));
    } else if (current !== "success") {
      fill(result);
    }
    logToggle.querySelector("summary").textContent = lines.length ? `Log (${lines.length} lines)` : "Log";
    logToggle.hidden = lines.length === 0;
    if (current === "running" || current === "failed") logToggle.open = true;
  }

  async function readLog() {
    for (let i = 0; i < 8; i += 1) { // at most 8 × 256 KiB at once; the rest on the next turn
      const part = await api.json(`/jobs/${name}/log?from=${next}`);
      if (part.run !== logRun) {
        logRun = part.run;
        lines = [];
        next = 0;
        log.setLines([]);
        if (part.from !== 0) continue;
      }
      if (part.lines.length) {
        lines = [...lines, ...part.lines].slice(-LOG_LINES_KEPT);
        log.add(part.lines);
      }
      const moved = part.next !== next;
      next = part.next;
      if (part.complete || !moved) return;
    }
  }

  /** A run this page saw start has ended: say how, once. */
  function announce() {
    seenRunning = null;
    if (announced === state.run) return;
    announced = state.run;
    render(true);
    onEnd(state);
  }

  /** Read the state and the log lines not read yet. */
  async function refresh() {
    const before = state;
    state = await api.json(`/jobs/${name}`);
    if (state.run && state.run !== logRun) {
      logRun = null;
      next = 0;
    }
    if (state.run) await readLog();
    if (state.status === "running") seenRunning = state.run;
    const ended = seenRunning && seenRunning === state.run && state.status !== "running";
    render(false);
    onState(state, before);
    if (ended) announce();
    return state;
  }

  /** Follow a running job until it ends (or the page is left). */
  async function follow() {
    if (following) return state;
    following = true;
    try {
      while (!stopped) {
        try {
          await refresh();
          if (state.status !== "running") break;
        } catch (error) {
          if (error.status === 403) break;
          // no answer: the page's connection notice says so; go on asking
        }
        await new Promise((done) => setTimeout(done, RUNNING_MS));
      }
    } finally {
      following = false;
    }
    return state;
  }

  /** After asking for a new run: wait until it shows (a run other than `previous`, the one
   * there was before asking: panel.run() then), then follow it to its end. */
  async function started(previous) {
    if (stopped) return state;
    for (let i = 0; i < 100 && !stopped; i += 1) {
      await refresh().catch(() => null);
      if (state?.run && state.run !== previous) break;
      await new Promise((done) => setTimeout(done, 200));
    }
    if (!state?.run || state.run === previous) return state;
    if (state.status !== "running") {
      announce(); // it ended before the first look: still news
      return state;
    }
    seenRunning = state.run;
    return follow();
  }

  element.refresh = refresh;
  element.follow = follow;
  element.started = started;
  element.state = () => state;
  element.run = () => state?.run ?? null;
  element.stop = () => { stopped = true; };
  if (onLeave) onLeave(() => { stopped = true; });
  if (jobs) {
    // The shell reads GET /jobs every few seconds: a run started elsewhere (a script, another
    // browser) shows here too.
    const unsubscribe = jobs.subscribe((list) => {
      const mine = list.find((job) => job.name === name);
      if (!mine || stopped || following) return;
      if (mine.run !== state?.run || mine.status !== state?.status) {
        if (mine.status === "running") {
          seenRunning = mine.run;
          follow();
        } else {
          refresh().catch(() => null);
        }
      }
    });
    if (onLeave) onLeave(unsubscribe);
  }
  element.load = async () => {
    try {
      await refresh();
    } catch (error) {
      if (error.status !== 404) throw error;
      // An appliance without GET /jobs: there is no job to show.
      element.hidden = true;
      stopped = true;
      return null;
    }
    if (state.status === "running") {
      seenRunning = state.run;
      follow();
    }
    return state;
  };
  render(false);
  return element;
}

/** The job kinds the appliance runs (GET /jobs), by name; {} when it has no /jobs. */
export async function jobKinds(api) {
  try {
    return Object.fromEntries(((await api.json("/jobs")).jobs || []).map((job) => [job.name, job]));
  } catch (error) {
    if (error.status === 404) return {};
    throw error;
  }
}

/** The log lines of an old-style status answer, whose newlines are the two characters \n. */
export function statusLog(answer) {
  return (answer?.log || "").replaceAll("\\n", "\n");
}
