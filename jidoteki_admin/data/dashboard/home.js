// Home: what is installed and how the appliance is doing.

import {h, card, facts, message} from "./dom.js";
import {healthFigures} from "./health.js";

function buildDate(build) {
  const stamp = Number(build?.builddate);
  if (!stamp) return build?.builddate ?? null;
  return new Date(stamp * 1000).toLocaleString();
}

async function settled(promise) {
  try {
    return {value: await promise};
  } catch (error) {
    return {error};
  }
}

export async function render({api, served}) {
  const [version, build, health, services, changelog] = await Promise.all([
    settled(api.optional("/version")),
    settled(served.has("/build") ? api.optional("/build") : Promise.resolve(null)),
    settled(served.has("/health") ? api.json("/health") : Promise.resolve(null)),
    settled(served.has("/services") ? api.json("/services") : Promise.resolve(null)),
    settled(served.has("/changelog") ? api.optional("/changelog", "text") : Promise.resolve(null)),
  ]);
  const failed = (result) => (result.error ? message("error", result.error.message) : null);
  const system = card("System",
    failed(version) || failed(build),
    facts([
      ["Version", version.value?.version || (version.error ? null : "not installed yet")],
      ["Address", window.location.host],
      ["Build", buildDate(build.value)],
      ["Build details", build.value ? Object.entries(build.value).filter(([k]) => k !== "builddate")
        .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ") : null],
    ]),
    h("p", {}, h("a", {href: "/docs"}, "The Admin API reference"), " for scripts and curl."));
  const healthCard = health.value || health.error ? card("Health", failed(health),
    health.value ? h("div", {class: "health-large"}, healthFigures(health.value)) : null,
    health.value ? facts([["Load average (1, 5, 15 min)", health.value.cpu?.load],
      ["CPU use, last 5 minutes", `${health.value.cpu?.cpu5minPercent ?? "?"} %`],
      ["Memory", `${health.value.memory?.used} used of ${health.value.memory?.total}`],
      ["Disk", `${health.value.disk?.used} used of ${health.value.disk?.total}`]]) : null) : null;
  const serviceList = services.value?.services || [];
  const servicesCard = services.value || services.error ? card("Services", failed(services),
    serviceList.length ? h("ul", {class: "services"}, serviceList.map((entry) => Object.entries(entry).map(([name, state]) =>
      h("li", {class: state === "running" ? "service up" : "service down"},
        h("span", {class: "dot", "aria-hidden": "true"}), h("span", {class: "service-name"}, name),
        h("span", {class: "service-state"}, state))))) : h("p", {class: "muted"}, "No services are reported.")) : null;
  const changelogCard = changelog.value !== null || changelog.error ? card("Changelog", failed(changelog),
    changelog.value ? h("pre", {class: "log changelog"}, changelog.value) : null) : null;
  return h("div", {class: "grid"}, system, healthCard, servicesCard, changelogCard);
}
