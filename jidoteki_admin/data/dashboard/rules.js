// The checks POST /settings makes (jidoteki_admin/formats/validate.py), mirrored so the form can say
// what is wrong before anything is sent. The server checks again and has the last word: its
// messages are shown next to the field they name.

const LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;
const INTERFACE = /^[A-Za-z0-9]{3,14}$/;

export function problem(option, allowed) {
  return `Missing or invalid string for option: ${option}. Allowed: ${allowed}`;
}

export function isIPv4(value) {
  const parts = value.split(".");
  return parts.length === 4 && parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255);
}

export function isIPv6(value) {
  if (!value.includes(":") || value.includes("%") || !/^[0-9A-Fa-f:.]+$/.test(value)) return false;
  try {
    return new URL(`http://[${value}]/`).hostname.length > 2;
  } catch {
    return false;
  }
}

/** 4, 6, or 0 for no address. */
export function ipVersion(value) {
  if (isIPv4(value)) return 4;
  if (isIPv6(value)) return 6;
  return 0;
}

export function checkInterface(value) {
  return INTERFACE.test(value) ? null : problem("interface", "3 to 14 letters and digits, like eth0");
}

export function checkHostname(value, option = "hostname") {
  const allowed = "a host name of 3 to 255 characters: labels of letters, digits and hyphens separated by dots";
  const name = value.endsWith(".") ? value.slice(0, -1) : value;
  if (value.length < 3 || value.length > 255 || !name || !name.split(".").every((l) => LABEL.test(l))) {
    return problem(option, allowed);
  }
  if (/^[0-9]+$/.test(name.replaceAll(".", ""))) return problem(option, allowed);
  return null;
}

export function checkAddress(value, option) {
  return ipVersion(value) ? null
    : problem(option, "an IPv4 address like 192.168.1.10 or an IPv6 address like 2001:db8::10");
}

export function checkNetmask(value, version, option = "netmask") {
  const longest = version === 6 ? 128 : 32;
  const allowed = `a prefix length from 0 to ${longest}` +
    (version === 6 ? " (this is an IPv6 address)" : " or a netmask like 255.255.255.0");
  if (/^[0-9]+$/.test(value)) {
    return Number(value) <= longest && String(Number(value)) === value ? null : problem(option, allowed);
  }
  if (version === 6 || !isIPv4(value)) return problem(option, allowed);
  const bits = value.split(".").map((p) => Number(p).toString(2).padStart(8, "0")).join("");
  return /^1*0*$/.test(bits) ? null : problem(option, allowed);
}

/** An IPv6 address with a zone (fe80::1%eth0): an address where a host name or address is asked for. */
function isZonedIPv6(value) {
  const [address, zone, ...more] = value.split("%");
  return more.length === 0 && Boolean(zone) && !zone.includes("/") && isIPv6(address);
}

/** A host name or an address; withPort, optionally followed by :port ([2001:db8::1]:123 for IPv6). */
export function checkHostOrAddress(value, option, withPort = false) {
  const allowed = `a host name or an IP address${withPort ? ", optionally followed by :port" : ""}`;
  let host = value;
  let port = null;
  if (withPort) {
    const bracketed = /^\[([^\]]+)\](?::([0-9]+))?$/.exec(value);
    if (bracketed) {
      [, host, port = null] = bracketed;
      if (!host.includes(":")) return problem(option, allowed);
    } else if (value.split(":").length === 2) {
      [host, port] = value.split(":");
    }
  }
  if (port !== null && !(/^[0-9]+$/.test(port) && Number(port) >= 1 && Number(port) <= 65535)) {
    return problem(option, allowed);
  }
  if (ipVersion(host) || isZonedIPv6(host)) return null;
  return checkHostname(host, option) ? problem(option, allowed) : null;
}

/**
 * The problems of a network settings form, by field name; {} when there are none.
 * Static when any of ip_address, netmask, gateway is given: then all three are needed.
 */
export function networkProblems(values) {
  const found = {};
  const given = (name) => typeof values[name] === "string" && values[name].trim() !== "";
  const set = (name, text) => {
    if (text && !found[name]) found[name] = text;
  };
  if (!given("interface")) set("interface", problem("interface", "3 to 14 letters and digits, like eth0"));
  else set("interface", checkInterface(values.interface.trim()));
  if (!given("hostname")) set("hostname", checkHostname("", "hostname"));
  else set("hostname", checkHostname(values.hostname.trim()));
  const static_ = values.mode === "static";
  let version = 4;
  if (static_) {
    if (!given("ip_address")) set("ip_address", checkAddress("", "ip_address"));
    else {
      set("ip_address", checkAddress(values.ip_address.trim(), "ip_address"));
      version = ipVersion(values.ip_address.trim()) || 4;
    }
    if (!given("netmask")) set("netmask", checkNetmask("", version));
    else set("netmask", checkNetmask(values.netmask.trim(), version));
    if (!given("gateway")) set("gateway", checkAddress("", "gateway"));
    else set("gateway", checkAddress(values.gateway.trim(), "gateway"));
    for (const name of ["dns1", "dns2"]) {
      if (given(name)) set(name, checkAddress(values[name].trim(), name));
    }
  }
  if (given("ntpserver")) set("ntpserver", checkHostOrAddress(values.ntpserver.trim(), "ntpserver", true));
  // The application name goes to app.json, which takes any JSON: the appliance has no rule for it.
  return found;
}

/**
 * The option a server message names, or null: "...for option: netmask. Allowed...",
 * "Unknown option in storage of type aoe: ip...", "Missing option for storage type nfs: share".
 */
export function optionNamed(text) {
  const match = /option(?: (?:in|for) [^:]+)?: ([A-Za-z0-9_]+)/.exec(text || "");
  return match ? match[1] : null;
}
