// The Admin Dashboard: sign in, the menu from GET /endpoints, and one page per section.

import {Api, ApiError, LOST, PREFIX, deriveKey, forgetKey, keepKey, storedKey, errorMessage} from "./api.js";
import {h, fill, card, field, messageSlot} from "./dom.js";
import {healthBar} from "./health.js";

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
  {id: "support", title: "Support", needs: ["/logs", "/debug"], any: true, module: "./support.js"},
  {id: "restart", title: "Restart", needs: ["/reboot"], module: "./restart.js"},
];

/** The pages GET /endpoints allows: an endpoint that is not listed has no page. */
export function availablePages(listed) {
  const served = new Set(listed.filter((path) => path.startsWith(PREFIX + "/")).map((path) => path.slice(PREFIX.length)));
  return PAGES.filter((page) => (page.any ? page.needs.some((n) => served.has(n)) : page.needs.every((n) => served.has(n))));
}

const root = document.getElementById("app");
let shell = null;

// Signing in

async function firstRunState() {
  // Where first-run is on, every error answer says whether the generated passphrase is still
  // the token. The API's own folder is no endpoint: asking it is answered 404 at once, and
  // is not a failed authentication (which the appliance would count, log and slow down).
  try {
    const response = await fetch(`${PREFIX}/`, {cache: "no-store", credentials: "omit"});
    if (response.ok) return null;
    return errorMessage(response.status, response.statusText, null, await response.text()).firstRun;
  } catch {
    return null;
  }
}

/** Whether a key is accepted: GET /version answers 200, or 404 before any version file. */
async function check(key) {
  const api = new Api(key);
  try {
    await api.call("GET", "/version");
    return {ok: true};
  } catch (error) {
    if (error.status === 404) return {ok: true};
    return {ok: false, error};
  }
}

function layoutPlain(...children) {
  fill(root, h("div", {class: "plain"}, h("div", {class: "brand brand-large"}, h("span", {class: "logo"}), "Admin Dashboard"),
    ...children,
    h("p", {class: "footnote"}, h("a", {href: "/docs"}, "Admin API documentation"))));
}

async function showLogin(notice = null, noticeKind = "info") {
  stopShell();
  const firstRun = await firstRunState();
  const slot = messageSlot();
  if (notice) slot.show(noticeKind, notice);
  const token = field(firstRun ? "Passphrase" : "API token",
    h("input", {type: "password", name: "token", autocomplete: "current-password", required: true}),
    firstRun ? "The passphrase the appliance shows on its console. You will choose a new token next." : null);
  const remember = h("input", {type: "checkbox", name: "remember", id: "remember"});
  const submit = h("button", {type: "submit", class: "button primary"}, "Sign in");
  const form = h("form", {class: "form", id: "login"}, token,
    h("div", {class: "field-check"}, remember, h("label", {for: "remember"}, "Remember me on this computer for 30 days")),
    h("div", {class: "actions"}, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    slot.clear();
    token.setError(null);
    const value = token.input.value;
    if (!value) {
      token.setError("Type the API token.");
      return;
    }
    submit.disabled = true;
    submit.textContent = "Signing in…";
    try {
      const key = await deriveKey(value);
      const result = await check(key);
      if (!result.ok) {
        if (result.error.status === 403) token.setError("This token is not accepted by the appliance.");
        else slot.show("error", result.error.message);
        return;
      }
      token.input.value = "";
      keepKey(key, remember.checked);
      if (firstRun) showFirstRun(key);
      else showShell(key);
    } finally {
      submit.disabled = false;
      submit.textContent = "Sign in";
    }
  });
  const setupLink = h("button", {type: "button", class: "link"}, "This appliance has no token yet");
  setupLink.addEventListener("click", () => showInitialSetup());
  layoutPlain(card(firstRun ? "First run: sign in with the passphrase" : "Sign in", slot, form,
    firstRun ? null : h("p", {class: "hint"}, setupLink)));
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
  const form = h("form", {class: "form"}, slot, first, again, h("div", {class: "actions"}, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    slot.clear();
    first.setError(null);
    again.setError(null);
    const value = first.input.value;
    const problem = tokenProblem(value);
    if (problem) {
      first.setError(problem);
      return;
    }
    if (value !== again.input.value) {
      again.setError("The two tokens differ.");
      return;
    }
    submit.disabled = true;
    try {
      await onSubmit(value);
    } catch (error) {
      slot.show("error", error.message);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

/** What POST /setup would refuse in a new token (auth.token_problem), or null. */
export function tokenProblem(value) {
  if (!value) return "Type a new token.";
  if (value.length > 255) return "newtoken must be at most 255 characters";
  if (!/^[!-~]+$/.test(value)) return "newtoken may only hold printable ASCII characters without spaces (! to ~)";
  return null;
}

function showFirstRun(key) {
  const api = new Api(key);
  layoutPlain(card("Choose a new API token",
    h("p", {}, "The appliance still uses its generated passphrase. Choose the token you will sign in with from now on."),
    tokenForm(async (value) => {
      await api.post("/setup", {newtoken: value});
      const newKey = await deriveKey(value);
      keepKey(newKey, Boolean(localStorage.getItem("jidoteki-admin-key")));
      showShell(newKey);
    })));
}

function showInitialSetup() {
  layoutPlain(card("Set the first API token",
    h("p", {}, "An appliance without a token accepts its first one from anyone who reaches it: set it now."),
    tokenForm(async (value) => {
      const api = new Api(null);
      try {
        await api.call("POST", "/setup", {form: formOf({newtoken: value}), signed: false});
      } catch (error) {
        if (error.status === 403) throw new ApiError(403, "This appliance already has a token: sign in with it.");
        throw error;
      }
      await showLogin("The token is set. Sign in with it.", "success");
    }),
    h("p", {class: "hint"}, backTo("Back to sign in"))));
}

function backTo(label) {
  const button = h("button", {type: "button", class: "link"}, label);
  button.addEventListener("click", () => showLogin());
  return button;
}

function formOf(fields) {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  return form;
}

// The signed-in dashboard

function stopShell() {
  if (!shell) return;
  shell.health.stop();
  shell.leave();
  window.removeEventListener("hashchange", shell.route);
  shell = null;
}

export function logout(notice = "You are signed out.", kind = "info") {
  forgetKey();
  showLogin(notice, kind);
}

async function showShell(key) {
  stopShell();
  const api = new Api(key, () => {
    if (shell) logout("The appliance no longer accepts this session's key (was the token changed?). Sign in again.",
      "warning");
  });
  let listed;
  try {
    listed = (await api.json("/endpoints")).endpoints || [];
  } catch (error) {
    if (error.status === 403) {
      logout("The appliance no longer accepts this session's key (was the token changed?). Sign in again.", "warning");
      return;
    }
    layoutPlain(card("The dashboard cannot start", h("p", {class: "message message-error"}, error.message),
      h("button", {type: "button", class: "button", onclick: () => showShell(key)}, "Try again")));
    return;
  }
  const pages = availablePages(listed);
  const served = new Set(listed.map((path) => path.slice(PREFIX.length)));
  const health = healthBar(api);
  const version = h("span", {class: "version-badge", title: "Installed version"}, "");
  const main = h("main", {class: "content", id: "content", tabindex: "-1"});
  const nav = h("nav", {class: "menu", "aria-label": "Sections"});
  const menuToggle = h("button", {type: "button", class: "menu-toggle", "aria-expanded": "false", "aria-controls": "menu"},
    "Menu");
  nav.id = "menu";
  menuToggle.addEventListener("click", () => {
    const open = nav.classList.toggle("open");
    menuToggle.setAttribute("aria-expanded", String(open));
  });
  const links = new Map();
  let group = null;
  for (const page of pages) {
    if (page.group !== group) {
      group = page.group;
      if (group) nav.append(h("p", {class: "menu-group"}, group));
    }
    const link = h("a", {href: `#/${page.id}`, "data-page": page.id}, page.title);
    links.set(page.id, link);
    nav.append(link);
  }
  const signOut = h("button", {type: "button", class: "button small", id: "logout"}, "Sign out");
  signOut.addEventListener("click", () => logout());
  const menuSignOut = h("button", {type: "button", class: "button small menu-signout"}, "Sign out");
  menuSignOut.addEventListener("click", () => logout());
  nav.append(menuSignOut);
  fill(root,
    h("header", {class: "topbar"},
      h("div", {class: "brand"}, h("span", {class: "logo"}), "Admin Dashboard", version),
      menuToggle, health, signOut),
    h("div", {class: "body"}, nav, main));
  let cleanups = [];
  let shown = 0; // which route is current: a page that finishes loading late is not shown
  const leave = () => {
    for (const cleanup of cleanups) cleanup();
    cleanups = [];
  };
  const route = async () => {
    leave();
    const turn = ++shown;
    const current = () => turn === shown && shell && shell.main === main;
    nav.classList.remove("open");
    menuToggle.setAttribute("aria-expanded", "false");
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
      api, served, health, onLeave: (cleanup) => cleanups.push(cleanup),
      navigate: (target) => { location.hash = `#/${target}`; },
      logout, refreshVersion,
    };
    fill(main, h("p", {class: "loading"}, "Loading…"));
    try {
      const module = await import(page.module);
      const element = await module.render(context);
      if (current()) {
        fill(main, h("h1", {class: "page-title"}, page.title), element);
        main.focus({preventScroll: true});
      }
    } catch (error) {
      if (current()) fill(main, h("h1", {class: "page-title"}, page.title),
        h("div", {class: "message message-error", role: "alert"},
          error instanceof ApiError ? error.message : `This page could not be shown: ${error.message}`));
    }
  };
  async function refreshVersion() {
    try {
      const answer = await api.optional("/version");
      version.textContent = answer ? `v${answer.version}` : "";
    } catch {
      version.textContent = "";
    }
  }
  shell = {health, route, leave, main};
  window.addEventListener("hashchange", route);
  health.start();
  refreshVersion();
  route();
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
    if (await firstRunState()) showFirstRun(key);
    else showShell(key);
  } else if (result.error.status === 0) {
    showLogin(LOST, "error");
  } else {
    forgetKey();
    showLogin("Your saved session is no longer valid. Sign in again.", "warning");
  }
}

if (root) boot();
