// The Admin Dashboard: sign in, the menu from GET /endpoints, and one page per section; the
// connection notice, the network change waiting to be kept, and the jobs the appliance runs,
// read every few seconds while the page is open.

import {Api, ApiError, LOST, PREFIX, deriveKey, forgetKey, keepKey, storedKey, setupState} from "./api.js";
import {h, fill, card, field, messageSlot} from "./dom.js";
import {healthBar} from "./health.js";
import {connectionNotice} from "./connection.js";
import {confirmationBanner} from "./confirm.js";
import {explain, sentence} from "./words.js";

// Every page, the endpoints that must be served for it to be shown, and its module.
export const PAGES = [
  {id: "home", title: "Home", needs: ["/version"], module: "./home.js"},
  {id: "monitor", title: "Monitor", needs: ["/health"], module: "./monitor.js"},
  {id: "update", title: "Update", needs: ["/update"], module: "./update.js"},
  {id: "network", title: "Network", needs: ["/settings"], module: "./network.js", group: "Settings"},
  {id: "certs", title: "TLS certificates", needs: ["/certs"], module: "./certs.js", group: "Settings"},
  {id: "storage", title: "Storage", needs: ["/storage"], module: "./storage.js", group: "Settings"},
  {id: "cluster", title: "Cluster", needs: ["/cluster"], module: "./cluster.js", group: "Settings"},
  {id: "license", title: "License", needs: ["/license"], module: "./license.js", group: "Settings"},
  {id: "backup", title: "Backup and restore", needs: ["/backup"], module: "./backup.js", group: "Settings"},
  {id: "token", title: "API token", needs: ["/setup"], module: "./token.js", group: "Settings"},
  {id: "logs", title: "Logs", needs: ["/logs", "/jobs"], any: true, module: "./logs.js", group: "Support"},
  {id: "support", title: "Support", needs: ["/logs", "/debug"], any: true, module: "./support.js", group: "Support"},
  {id: "restart", title: "Restart", needs: ["/reboot"], module: "./restart.js", group: "Support"},
];
const HEARTBEAT_MS = 3000;

/** The pages GET /endpoints allows: an endpoint that is not listed has no page. */
export function availablePages(listed) {
  const served = new Set(listed.filter((path) => path.startsWith(PREFIX + "/")).map((path) => path.slice(PREFIX.length)));
  return PAGES.filter((page) => (page.any ? page.needs.some((n) => served.has(n)) : page.needs.every((n) => served.has(n))));
}

const root = document.getElementById("app");
let shell = null;

/** A link to the main content, first in the tab order: the menu is a dozen stops long. */
function skipLink(targetId) {
  const link = h("a", {class: "skip-link", href: `#${targetId}`}, "Skip to the main content");
  link.addEventListener("click", (event) => {
    event.preventDefault(); // the address's # is the router's
    const target = document.getElementById(targetId);
    target?.focus();
  });
  return link;
}

// Signing in

/** Whether a key is accepted: GET /endpoints answers 200 with it (and is needed next). */
async function check(key) {
  const api = new Api(key);
  try {
    return {ok: true, listed: (await api.json("/endpoints")).endpoints || []};
  } catch (error) {
    return {ok: false, error};
  }
}

function layoutPlain(...children) {
  fill(root, skipLink("plain"), h("main", {class: "plain", id: "plain", tabindex: "-1"},
    h("p", {class: "brand brand-large"}, h("span", {class: "logo", "aria-hidden": "true"}), "Admin Dashboard"),
    ...children,
    h("p", {class: "footnote"}, h("a", {href: "/docs"}, "Admin API documentation"))));
}

async function showLogin(notice = null, noticeKind = "info") {
  stopShell();
  const state = await setupState();
  const firstRun = state?.["first-run"] === true;
  if (state && state.token === false) {
    showInitialSetup(notice);
    return;
  }
  const slot = messageSlot();
  if (notice) slot.show(noticeKind, notice);
  const secret = firstRun ? "passphrase" : "API token";
  const token = field(firstRun ? "Passphrase" : "API token",
    h("input", {type: "password", name: "token", autocomplete: "current-password", required: true}),
    firstRun ? "The passphrase the appliance shows on its console. You will choose a new token next." : null);
  const remember = h("input", {type: "checkbox", name: "remember", id: "remember"});
  const submit = h("button", {type: "submit", class: "button primary"}, "Sign in");
  const form = h("form", {class: "form", id: "login", novalidate: true}, token,
    h("div", {class: "field-check"}, remember, h("label", {for: "remember"}, "Remember me on this computer for 30 days")),
    h("div", {class: "actions"}, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    slot.clear();
    token.setError(null);
    const value = token.input.value;
    if (!value) {
      token.setError(`Type the ${secret}.`);
      token.input.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = "Signing in…";
    try {
      const key = await deriveKey(value);
      const result = await check(key);
      if (!result.ok) {
        if (result.error.status === 403) {
          token.setError(`This ${secret} is not accepted by the appliance. Check it and type it again.`);
          token.input.focus();
        } else {
          slot.show("error", sentence(result.error));
        }
        return;
      }
      token.input.value = "";
      keepKey(key, remember.checked);
      if (firstRun) showFirstRun(key);
      else showShell(key, result.listed);
    } finally {
      submit.disabled = false;
      submit.textContent = "Sign in";
    }
  });
  layoutPlain(h("h1", {class: "visually-hidden"}, "Sign in to the Admin Dashboard"),
    card(firstRun ? "First run: sign in with the passphrase" : "Sign in", slot, form));
  token.input.focus();
}

/** A new-token form: used at first run, for the initial setup and on the API token page. */
export function tokenForm(onSubmit, label = "Set the token") {
  const slot = messageSlot();
  const first = field("New API token", h("input", {type: "password", name: "newtoken", autocomplete: "new-password",
    maxlength: 255}), "1 to 255 characters: letters, digits and punctuation (ASCII ! to ~), no spaces.");
  const again = field("The new token again", h("input", {type: "password", name: "newtoken2", autocomplete: "new-password",
    maxlength: 255}));
  const submit = h("button", {type: "submit", class: "button primary"}, label);
  const form = h("form", {class: "form", novalidate: true}, slot, first, again, h("div", {class: "actions"}, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    slot.clear();
    first.setError(null);
    again.setError(null);
    const value = first.input.value;
    const problem = tokenProblem(value);
    if (problem) {
      first.setError(problem);
      first.input.focus();
      return;
    }
    if (value !== again.input.value) {
      again.setError("The two tokens differ: type the same token twice.");
      again.input.focus();
      return;
    }
    submit.disabled = true;
    try {
      await onSubmit(value);
    } catch (error) {
      const explained = explain(error.message);
      if (explained.field === "newtoken") first.setError(explained.text);
      else slot.show("error", sentence(error));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

/** What POST /setup would refuse in a new token (auth.token_problem), in words for people. */
export function tokenProblem(value) {
  if (!value) return "Type a new token.";
  if (value.length > 255) return "Type at most 255 characters.";
  if (!/^[!-~]+$/.test(value)) {
    return "Use only letters, digits and punctuation (ASCII ! to ~), without spaces.";
  }
  return null;
}

function showFirstRun(key) {
  const api = new Api(key);
  layoutPlain(h("h1", {class: "visually-hidden"}, "First run"), card("Choose a new API token",
    h("p", {}, "The appliance still uses its generated passphrase. Choose the token you will sign in with from now on."),
    tokenForm(async (value) => {
      await api.post("/setup", {newtoken: value});
      const newKey = await deriveKey(value);
      keepKey(newKey, Boolean(localStorage.getItem("jidoteki-admin-key")));
      showShell(newKey);
    })));
  root.querySelector("input[name=newtoken]")?.focus();
}

function showInitialSetup(notice = null) {
  const slot = messageSlot();
  if (notice) slot.show("info", notice);
  layoutPlain(h("h1", {class: "visually-hidden"}, "Set up the appliance"), card("Set the first API token", slot,
    h("p", {}, "This appliance has no API token yet, and accepts its first one from anyone who reaches it: set it now."),
    tokenForm(async (value) => {
      const api = new Api(null);
      try {
        await api.call("POST", "/setup", {fields: {newtoken: value}, signed: false});
      } catch (error) {
        if (error.status === 403) throw new ApiError(403, "This appliance already has a token: sign in with it.");
        throw error;
      }
      await showLogin("The token is set. Sign in with it.", "success");
    })));
  root.querySelector("input[name=newtoken]")?.focus();
}

// The signed-in dashboard

function stopShell() {
  if (!shell) return;
  shell.stop();
  shell = null;
}

export function logout(notice = "You are signed out.", kind = "info") {
  forgetKey();
  showLogin(notice, kind);
}

/** GET /jobs every few seconds while the tab is seen: the jobs' state for every page that
 * shows one, and the first sign that the appliance stopped answering. */
function heartbeat(api, hasJobs) {
  const listeners = new Set();
  let timer = null;
  let last = [];
  const beat = async () => {
    clearTimeout(timer);
    if (document.hidden) return;
    try {
      if (hasJobs()) {
        last = (await api.json("/jobs")).jobs || [];
        for (const listener of [...listeners]) listener(last);
      } else {
        await api.call("HEAD", "/endpoints");
      }
    } catch {
      // no answer: the connection notice is up
    }
    timer = setTimeout(beat, HEARTBEAT_MS);
  };
  const visible = () => {
    if (!document.hidden) beat();
  };
  return {
    start() {
      document.addEventListener("visibilitychange", visible);
      beat();
    },
    stop() {
      clearTimeout(timer);
      document.removeEventListener("visibilitychange", visible);
    },
    now: beat,
    last: () => last,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

const SIGNED_OUT = "The appliance no longer accepts this session's key (was the token changed?). Sign in again.";

async function showShell(key, listedFirst = null) {
  stopShell();
  let notice = null;
  const api = new Api(key, () => {
    if (shell) logout(SIGNED_OUT, "warning");
  }, (answered) => notice?.answered(answered));
  let listed = listedFirst;
  if (!listed) {
    try {
      listed = (await api.json("/endpoints")).endpoints || [];
    } catch (error) {
      if (error.status === 403) {
        logout(SIGNED_OUT, "warning");
        return;
      }
      const again = h("button", {type: "button", class: "button"}, "Try again");
      again.addEventListener("click", () => showShell(key));
      layoutPlain(card("The dashboard cannot start", h("p", {class: "message message-error"}, sentence(error)), again));
      return;
    }
  }
  let pages = availablePages(listed);
  let served = new Set(listed.map((path) => path.slice(PREFIX.length)));
  const health = healthBar(api);
  const jobs = heartbeat(api, () => served.has("/jobs"));
  const version = h("span", {class: "version-badge", title: "Installed version"}, "");
  const main = h("main", {class: "content", id: "content", tabindex: "-1"});
  const nav = h("nav", {class: "menu", id: "menu", "aria-label": "Sections"});
  const menuToggle = h("button", {type: "button", class: "menu-toggle", "aria-expanded": "false", "aria-controls": "menu"},
    "Menu");
  const closeMenu = (focusToggle) => {
    if (!nav.classList.contains("open")) return;
    nav.classList.remove("open");
    menuToggle.setAttribute("aria-expanded", "false");
    if (focusToggle) menuToggle.focus();
  };
  menuToggle.addEventListener("click", () => {
    const open = nav.classList.toggle("open");
    menuToggle.setAttribute("aria-expanded", String(open));
    if (open) nav.querySelector("a")?.focus();
  });
  const onKey = (event) => {
    if (event.key === "Escape" && nav.classList.contains("open")) closeMenu(true);
  };
  document.addEventListener("keydown", onKey);
  const links = new Map();
  function buildMenu() {
    links.clear();
    let group = null;
    const items = [];
    for (const page of pages) {
      if (page.group !== group) {
        group = page.group;
        if (group) items.push(h("p", {class: "menu-group", "aria-hidden": "true"}, group));
      }
      const link = h("a", {href: `#/${page.id}`, "data-page": page.id}, page.title);
      links.set(page.id, link);
      items.push(link);
    }
    const menuSignOut = h("button", {type: "button", class: "button small menu-signout"}, "Sign out");
    menuSignOut.addEventListener("click", () => logout());
    fill(nav, items, menuSignOut);
  }
  buildMenu();
  const signOut = h("button", {type: "button", class: "button small", id: "logout"}, "Sign out");
  signOut.addEventListener("click", () => logout());
  const banner = confirmationBanner(api, jobs, () => served.has("/settings"));
  const frame = h("div", {class: "frame"},
    h("header", {class: "topbar"},
      h("p", {class: "brand"}, h("span", {class: "logo", "aria-hidden": "true"}), "Admin Dashboard", version),
      menuToggle, health, signOut),
    banner,
    h("div", {class: "body"}, nav, main));
  notice = connectionNotice({
    probe: () => api.call("HEAD", "/endpoints"),
    shell: frame,
    onBack: (reason) => back(reason),
  });
  fill(root, skipLink("content"), frame, notice);
  let cleanups = [];
  let shown = 0; // which route is current: a page that finishes loading late is not shown
  let failedImport = false;
  const leave = () => {
    for (const cleanup of cleanups) cleanup();
    cleanups = [];
  };
  const route = async () => {
    leave();
    const turn = ++shown;
    const current = () => turn === shown && shell && shell.main === main;
    closeMenu(false);
    const id = (location.hash.match(/^#\/([a-z]+)/) || [])[1];
    const page = pages.find((p) => p.id === id) || pages[0];
    if (!page) {
      fill(main, card("Nothing to show", h("p", {}, "This appliance serves no page of the dashboard.")));
      return;
    }
    for (const [pageId, link] of links) {
      if (pageId === page.id) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
    }
    document.title = `${page.title} · Admin Dashboard`;
    const context = {
      api, served, health, jobs, connection: notice, onLeave: (cleanup) => cleanups.push(cleanup),
      navigate: (target) => { location.hash = `#/${target}`; },
      logout, refreshVersion,
    };
    fill(main, h("p", {class: "loading"}, "Loading…"));
    let module;
    try {
      // After a failed load the browser keeps the failure for that address: ask anew.
      module = await import(failedImport ? `${page.module}?again=${Date.now()}` : page.module);
    } catch {
      failedImport = true;
      if (current()) {
        fill(main, h("h1", {class: "page-title"}, page.title), h("div", {class: "message message-error"},
          "This page cannot be loaded while the appliance does not answer; it opens as soon as it does."));
      }
      notice.answered(false);
      return;
    }
    try {
      const element = await module.render(context);
      if (current()) {
        fill(main, h("h1", {class: "page-title"}, page.title), element);
        if (document.activeElement === document.body || !document.activeElement || !root.contains(document.activeElement)
            || nav.contains(document.activeElement)) {
          main.focus({preventScroll: true});
        }
      }
    } catch (error) {
      if (current()) fill(main, h("h1", {class: "page-title"}, page.title),
        h("div", {class: "message message-error"},
          error instanceof ApiError ? sentence(error) : `This page could not be shown: ${error.message}`));
    }
  };
  async function refreshVersion() {
    try {
      const answer = await api.optional("/version");
      version.textContent = answer ? `v${answer.version}` : "";
    } catch {
      // the badge keeps what it showed; the connection notice says why
    }
  }
  /** The appliance answers again: read everything anew (an update may have changed what
   * it serves), and show the page as it is now. */
  async function back(reason = null) {
    try {
      const again = (await api.json("/endpoints")).endpoints || [];
      pages = availablePages(again);
      served = new Set(again.map((path) => path.slice(PREFIX.length)));
      buildMenu();
    } catch {
      return;
    }
    health.refresh();
    refreshVersion();
    jobs.now();
    if (!reason?.keepPage) route();
  }
  shell = {
    route, main,
    stop() {
      health.stop();
      jobs.stop();
      notice.stop();
      banner.stop();
      leave();
      document.removeEventListener("keydown", onKey);
      window.removeEventListener("hashchange", route);
    },
  };
  window.addEventListener("hashchange", route);
  health.start();
  jobs.start();
  refreshVersion();
  route();
  // Every page's module, loaded now: a page opened while the appliance is away still opens.
  for (const page of pages) import(page.module).catch(() => null);
}

async function boot() {
  const key = storedKey();
  if (!key) {
    showLogin();
    return;
  }
  const result = await check(key);
  if (result.ok) {
    // Signed in with the generated passphrase but no token chosen yet: choose it first.
    if ((await setupState())?.["first-run"]) showFirstRun(key);
    else showShell(key, result.listed);
  } else if (result.error.status === 0) {
    await showLogin(LOST, "error");
    // Tried again by itself until the appliance answers, unless someone is signing in.
    setTimeout(() => {
      if (!shell && root.querySelector("#login") && !root.querySelector("#login input[name=token]")?.value) boot();
    }, 5000);
  } else {
    forgetKey();
    showLogin("Your saved session is no longer valid. Sign in again.", "warning");
  }
}

if (root) boot();
