// Home: what is installed and how the appliance is doing: version, build, health, the
// network settings, the license, the certificate in service, services and changelog.

import {h, card, facts, message} from "./dom.js";
import {healthFigures} from "./health.js";
import {fullDate, size} from "./format.js";
import {sentence} from "./words.js";
import {inEffect} from "./network.js";
import {licenseSummary} from "./license.js";
import {expiry} from "./certs.js";

function buildDate(build) {
  const stamp = Number(build?.builddate);
  if (!stamp) return build?.builddate ?? null;
  return fullDate(stamp);
}

async function settled(promise) {
  try {
    return {value: await promise};
  } catch (error) {
    return {error};
  }
}

const none = Promise.resolve(null);

export async function render({api, served, navigate}) {
  const [version, build, health, services, changelog, settings, license] = await Promise.all([
    settled(api.optional("/version")),
    settled(served.has("/build") ? api.optional("/build") : none),
    settled(served.has("/health") ? api.json("/health") : none),
    settled(served.has("/services") ? api.json("/services") : none),
    settled(served.has("/changelog") ? api.optional("/changelog", "text") : none),
    settled(served.has("/settings") ? api.optional("/settings") : none),
    settled(served.has("/license") ? api.optional("/license") : none),
  ]);
  const failed = (result) => (result.error ? message("error", sentence(result.error)) : null);
  const more = (page, label) => {
    const link = h("a", {href: `#/${page}`}, label);
    link.addEventListener("click", (event) => {
      event.preventDefault();
      navigate(page);
    });
    return h("p", {class: "more"}, link);
  };
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
  const figures = health.value;
  const certificate = figures?.certificate;
  const soon = certificate ? expiry(certificate) : null;
  const healthCard = figures || health.error ? card("Health", failed(health),
    figures ? h("div", {class: "health-large"}, healthFigures(figures)) : null,
    figures ? facts([["Load average (1, 5, 15 min)", figures.cpu?.load],
      ["CPU use, last 5 minutes", `${figures.cpu?.cpu5minPercent ?? "?"} %`],
      ["Memory", `${size(figures.memory?.used)} used of ${size(figures.memory?.total)}`],
      ["Disk", `${size(figures.disk?.used)} used of ${size(figures.disk?.total)}`]]) : null,
    served.has("/health") ? more("monitor", "Charts of the last hour to the last year") : null) : null;
  const networkCard = served.has("/settings") ? card("Network", failed(settings),
    settings.error ? null : inEffect(settings.value), more("network", "Change the network settings")) : null;
  const licenseCard = served.has("/license") ? card("License",
    license.error && license.error.status !== 404 ? failed(license) : licenseSummary(license.value),
    more("license", "Install a license")) : null;
  const certificateCard = certificate ? card("TLS certificate",
    soon ? message(...soon) : null,
    facts([["Subject", certificate.subject], ["Expires", fullDate(certificate.expires)]]),
    served.has("/certs") ? more("certs", "The certificate in detail") : null) : null;
  const serviceList = services.value?.services || [];
  const servicesCard = services.value || services.error ? card("Services", failed(services),
    serviceList.length ? h("ul", {class: "services"}, serviceList.map((entry) => Object.entries(entry).map(([name, state]) =>
      h("li", {class: state === "running" ? "service up" : "service down"},
        h("span", {class: "dot", "aria-hidden": "true"}), h("span", {class: "service-name"}, name),
        h("span", {class: "service-state"}, state))))) : h("p", {class: "muted"}, "No services are reported.")) : null;
  const changelogCard = changelog.value !== null || changelog.error ? card("Changelog", failed(changelog),
    changelog.value ? h("pre", {class: "log changelog", tabindex: "0", "aria-label": "Changelog"}, changelog.value) : null)
    : null;
  return h("div", {class: "grid"}, system, healthCard, networkCard, licenseCard, certificateCard, servicesCard,
    changelogCard);
}
