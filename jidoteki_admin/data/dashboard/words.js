// The appliance's refusals in words for people. The API speaks to scripts ("Missing or
// invalid string for option: ip. Allowed: ..."): every message it sends back is matched here
// to a sentence that says what to do, and to the form field it concerns, if any.
//
// explain(message) answers {text, field, known}: field is the option the message names
// (the form's field of that name shows the text), known is false for a message no rule
// here knows (then the appliance's own words are shown, plainly marked as such).

import {bytes} from "./format.js";

export const LOST = "The appliance does not answer. Check that it is on and that this computer reaches it; "
  + "this page tries again by itself.";

/** What to type in each option the appliance checks, by the option's name. */
const OPTIONS = {
  // Network (validate.py)
  interface: "Type the network interface's name: 3 to 14 letters and digits, like eth0.",
  hostname: "Type a host name like admin.example.com: letters, digits and hyphens, in parts separated by dots.",
  ip_address: "Type an IPv4 address like 192.168.1.10, or an IPv6 address like 2001:db8::10.",
  netmask: "Type a netmask like 255.255.255.0, or a prefix length like 24.",
  gateway: "Type the gateway's address, an IPv4 or IPv6 address like the IP address.",
  dns1: "Type the DNS server's IPv4 or IPv6 address, or leave this empty.",
  dns2: "Type the DNS server's IPv4 or IPv6 address, or leave this empty.",
  ntpserver: "Type a time server's name or address, like pool.ntp.org, optionally followed by :port (like :123).",
  // Storage (storage_settings.py)
  ip: "Type the server's IP address, like 192.168.1.100 (not a name: storage is mounted before names can be looked up).",
  share: "Type the share as an absolute path, like /nfs/storage.",
  mount_options: "Type mount options separated by commas, like noacl,sync, or leave this empty.",
  device: "Type the device as e, the shelf, a dot and the slot, like e0.1.",
  target: "Type the iSCSI name of the target, like iqn.2016-01.com.example:storage.lun1.",
  username: "Type a user name of letters, digits and . _ + @ : / = ~ - (at most 255).",
  password: "Type a password of 1 to 255 characters, without $ ` \\ \" ' ; | < > or &.",
  port: "Type a port number from 1 to 65535.",
  export_name: "Type the export's name: letters, digits and . _ + @ : / = ~ - (at most 255).",
  // Cluster (cluster_settings.py)
  name: "Type the cluster's name: one word of letters, digits and hyphens, like store.",
  node: "Type this node's name: one word of letters, digits and hyphens, like node1.",
  role: "Choose whether this node is the primary or a secondary.",
  secret: "Type the shared secret: 16 to 256 characters, without quotes or backslashes, the same on every node.",
  peers: "List at most 64 peers, each with a name and an address.",
};

const LABELS = {
  interface: "interface", hostname: "host name", ip_address: "IP address", netmask: "netmask", gateway: "gateway",
  dns1: "first DNS server", dns2: "second DNS server", ntpserver: "time server", ip: "server address",
  share: "share", mount_options: "mount options", device: "device", target: "target", username: "user name",
  password: "password", port: "port", export_name: "export name", name: "name", node: "node name", role: "role",
  secret: "shared secret",
};

const PEER_FIELDS = {
  name: "Type the peer's name: one word of letters, digits and hyphens, like node2.",
  address: "Type the peer's host name or IP address, like node2.example.com or 10.0.0.2.",
  port: "Type a port number from 1 to 65535, or leave this empty.",
};

const FILES = {public: "certificate", private: "private key", ca: "CA certificate", license: "license",
  update: "update package", archive: "backup archive", settings: "settings"};

function capital(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

function list(words) {
  return words.length < 2 ? words.join("") : `${words.slice(0, -1).join(", ")} and ${words[words.length - 1]}`;
}

// [pattern, (match, message) => {text, field}], tried in order.
const RULES = [
  // Options a form sets
  [/^Missing or invalid string for option: password\. \*{8} keeps/, () => ({field: "password",
    text: "No password is stored yet, so one must be typed. " + OPTIONS.password})],
  [/^Missing or invalid string for option: secret\. \*{8} keeps/, () => ({field: "secret",
    text: "No secret is stored yet, so one must be typed. " + OPTIONS.secret})],
  [/^Missing or invalid string for option: type\. Allowed: (.+)$/, (m) => ({field: "type",
    text: `Choose one of the storage types this appliance allows: ${m[1]}.`})],
  [/^Missing or invalid \w+ for option: peer (\d+) (name|address|port)\b/, (m) => ({field: `peer ${m[1]} ${m[2]}`,
    text: PEER_FIELDS[m[2]]})],
  [/^Missing or invalid \w+ for option: netmask\..*IPv6/, () => ({field: "netmask",
    text: "Type a prefix length from 0 to 128, like 64: the address is an IPv6 address."})],
  [/^Missing or invalid \w+ for option: ([a-z0-9_]+)/, (m) => ({field: m[1],
    text: OPTIONS[m[1]] || `Check the ${LABELS[m[1]] || m[1].replaceAll("_", " ")}: the appliance does not accept it.`})],
  [/^Missing option for static network settings: ([a-z_, ]+)\./, (m) => {
    const missing = m[1].split(", ");
    return {field: missing[0], fields: missing, text: `A static address needs an IP address, a netmask and a gateway: `
      + `type the ${list(missing.map((n) => LABELS[n] || n))} too, or choose DHCP.`};
  }],
  [/^Missing option for storage type iscsi: username and password go together/, () => ({field: "username",
    text: "Type both a user name and a password, or neither."})],
  [/^Missing option for storage type (\w+): ([a-z_, ]+)$/, (m) => {
    const missing = m[2].split(", ");
    return {field: missing[0], fields: missing, text: `This storage type needs the ${list(missing.map((n) => LABELS[n] || n))}.`};
  }],
  [/^Unknown option in storage of type (\w+): (\w+)/, (m) => ({field: m[2],
    text: `This storage type takes no ${LABELS[m[2]] || m[2]}: leave it empty.`})],
  [/^Peer (\d+) is this node itself/, (m) => ({field: `peer ${m[1]} name`,
    text: "This peer has this node's own name: a node is not its own peer."})],
  [/^Peer (\d+): the address .* is listed twice/, (m) => ({field: `peer ${m[1]} address`,
    text: "Another peer already has this address (and port): list each node once."})],
  [/^Peer (\d+): the peer .* is listed twice/, (m) => ({field: `peer ${m[1]} name`,
    text: "Another peer already has this name: list each node once."})],
  [/^Too many peers: (\d+) \(at most (\d+)\)/, (m) => ({field: "peers",
    text: `A cluster lists at most ${m[2]} peers, not ${m[1]}: remove some.`})],

  // TLS certificates (certificates.py)
  [/^The (public|ca) file is empty/, (m) => ({field: m[1], text: `This file is empty: choose the ${FILES[m[1]]} file.`})],
  [/^The (public|ca) file is not a PEM certificate/, (m) => ({field: m[1],
    text: "This is not a certificate in PEM form: choose the file that begins with -----BEGIN CERTIFICATE-----."})],
  [/^The (public|ca) file holds a certificate that cannot be read/, (m) => ({field: m[1],
    text: "A certificate in this file is damaged: get the file again from whoever issued it."})],
  [/^The (public|ca) file holds (\d+) certificates: at most (\d+)/, (m) => ({field: m[1],
    text: `This file holds ${m[2]} certificates; the appliance takes at most ${m[3]}: keep only the certificate and its chain.`})],
  [/^The private file is (empty|not a PEM private key)/, () => ({field: "private",
    text: "This is not a private key in PEM form: choose the key file made with the certificate (it begins with -----BEGIN ... PRIVATE KEY-----)."})],
  [/^The private key is encrypted/, () => ({field: "private",
    text: "This key is protected by a passphrase, which the appliance cannot type: remove it "
      + "(openssl pkey -in KEY -out UNENCRYPTED.key) and choose the new file."})],
  [/^The private key does not match the certificate/, () => ({field: "private",
    text: "This key does not belong to this certificate: choose the key the certificate was made for."})],
  [/^The private key (cannot be read|is a \w+ key)/, () => ({field: "private",
    text: "This key cannot be used: the appliance takes unencrypted RSA and EC keys in PEM form."})],
  [/^The certificate chain in the (public|ca) file is not in order/, (m) => ({field: m[1],
    text: "The certificates in this file are out of order: put the server's certificate first, then each one's issuer."})],
  [/^The CA did not sign the certificate/, () => ({field: "ca",
    text: "This CA did not issue the certificate: choose the CA or intermediate certificate that did, or none."})],
  [/^The TLS library refuses the certificate and key/, () => ({field: "public",
    text: "The appliance's TLS library refuses this certificate and key (a key too weak, say): ask for another certificate."})],

  // License (licensefile.py, bin/license.sh)
  [/^Invalid license signature|signature .*\(checked with/i, () => ({field: "license",
    text: "This license was not signed by this appliance's vendor, or was changed since: ask the vendor for a new license file."})],
  [/^The license file is empty/, () => ({field: "license", text: "This file is empty: choose the license file from the vendor."})],
  [/^The license file (is not armored text|has )|^The (document|signature) block of the license file/, () => ({
    field: "license", text: "This is not a license file: choose the license file (license.asc) the vendor sent."})],
  [/^The license document/, () => ({field: "license",
    text: "This license file is incomplete or malformed: ask the vendor for a new one."})],
  [/^No license can be checked: the license public key/, () => ({field: "license",
    text: "This appliance cannot check licenses: the vendor's public key is missing from it. Ask the vendor."})],
  [/^No license is installed/, () => ({text: "No license is installed yet: install the license file from the vendor."})],
  [/^The license is not valid|bin\/license\.sh printed nothing/, () => ({field: "license",
    text: "The appliance does not accept this license: ask the vendor for a license made for it."})],
  [/checks a license only by installing it/, () => ({text: "This appliance checks a license only by installing it."})],

  // Updates (package.py)
  [/^(E1004: )?An update is already running/, () => ({text: "An update is already running: wait for it to finish."})],
  [/version '([^']*)' is not newer than the installed version '([^']*)'/, (m) => ({field: "update",
    text: `This package holds version ${m[1]}, which is not newer than the installed ${m[2]}: choose a newer package.`})],
  [/^Missing update package/, () => ({field: "update", text: "The appliance found no update package: upload it again."})],
  [/^The update package is empty/, () => ({field: "update", text: "This file is empty: choose the update package."})],
  [/^(Damaged update package|Cannot (extract|read) |Missing \S+ in update package|Duplicate member|Signature in update|.* in update package is not)/,
    () => ({field: "update", text: "This package is damaged, or not made for this appliance: download it again, "
      + "or ask the vendor for the right one."})],
  [/[Dd]ecrypt|[Ss]ignature/, () => ({field: "update", text: "This package could not be decrypted or its signature "
    + "checked: it was not made for this appliance, or it is damaged. Download it again, or ask the vendor."})],

  // Backup and restore
  [/^The backup archive is empty/, () => ({field: "archive", text: "This file is empty: choose a backup.tar."})],
  [/^(Unable to extract backup archive|Refusing .*backup archive)/, () => ({field: "archive",
    text: "This file is not a backup this appliance can restore: choose a backup.tar made by the appliance. "
      + "Nothing was changed."})],
  [/^Could not move the restored files into place/, () => ({field: "archive",
    text: "The restore could not put the files in place; the previous data is back as it was. "
      + "Free some disk space and try again."})],
  [/^Nothing to back up/, () => ({text: "There is nothing to back up: the appliance's list of what to back up "
    + "(etc/backup.txt) is missing or names nothing that exists. Ask the vendor."})],
  [/^Not enough free space for the backup/, () => ({text: "There is not enough free space on the appliance for "
    + "the backup: free some disk space and try again."})],
  [/^tar ended with exit status/, () => ({text: "Writing the backup archive failed: see the log for why."})],
  [/^No backup archive: a backup is running/, () => ({text: "The backup is still running: download it once it is done."})],
  [/^No backup archive/, () => ({text: "There is no backup to download: start one first."})],

  // Network change outcomes (jobs/settings.py)
  [/^not confirmed, previous settings restored(, but applying them failed: (.*))?/, (m) => ({
    text: m[1] ? `Nobody confirmed the change in time, so the appliance put the previous settings back, but applying `
      + `them failed (${m[2]}): check the appliance's console.`
      : "Nobody confirmed the change in time, so the appliance put the previous settings back."})],
  [/^Interrupted by SIGTERM; previous settings restored/, () => ({text: "The change was undone: the previous "
    + "settings are back in place."})],
  [/^bin\/(\S+) failed with exit status (\d+); the previous settings are back, but applying them failed/, (m) => ({
    text: `The appliance could not apply the settings (its ${m[1]} failed with status ${m[2]}); it put the previous `
      + "ones back, but applying them failed too. Check the network on the appliance's console."})],
  [/^bin\/(\S+) failed with exit status (\d+); previous settings restored/, (m) => ({text: `The appliance could not `
    + `apply the settings (its ${m[1]} failed with status ${m[2]}), so it put the previous ones back. See the log `
    + `below; check the values, or ask the vendor.`})],
  [/; previous settings restored$/, () => ({text: "The change failed, so the appliance put the previous settings "
    + "back. See the log below."})],
  [/^bin\/(\S+) failed with exit status (\d+)/, (m) => ({text: `The appliance's ${m[1]} failed (exit status ${m[2]}): `
    + "see the log below, and ask the vendor if it happens again."})],
  [/^The change is made, but it may not survive a reboot/, () => ({text: "The change is made, but saving it for the "
    + "next start failed: it may be lost at the next restart. See the log."})],

  // Jobs in general (runner.py)
  [/^Interrupted by SIGTERM/, () => ({text: "The job was stopped before it ended; what it had begun was undone."})],
  [/^(?:E\d{4}: )?Cannot start (.+) while (.+) is running$/, (m) => ({text: `${capital(m[2])} is running: wait for `
    + `it to finish, then start ${m[1]}.`})],
  [/^(?:E\d{4}: )?(.+) is already running$/, (m) => ({text: `${capital(m[1])} is already running: wait for it to finish.`})],
  [/^The job (timed out|was killed by signal|ended with exit status|ended while no daemon)/, () => ({text: "The job "
    + "ended without saying how: see its log, and ask the vendor if it happens again."})],
  [/^Unexpected error/, () => ({text: "The job failed unexpectedly: see its log, and send the appliance's logs "
    + "(Support) to the vendor."})],

  // Forms and uploads (http/gate.py, http/uploads.py)
  [/^Missing required parameter: (\w+)/, (m) => ({field: m[1], text: FILES[m[1]]
    ? `Choose the ${FILES[m[1]]} file.` : `Fill in the ${LABELS[m[1]] || m[1]}.`})],
  [/^Parameter (\w+) is larger than its limit of (\d+) bytes/, (m) => ({field: m[1],
    text: `This file is too large: the appliance takes at most ${bytes(Number(m[2]))} here.`})],
  [/^Not enough disk space to store the upload/, () => ({text: "The appliance has no room for this file: free some "
    + "disk space on it and try again."})],
  [/^Authentication error/, () => ({text: "The appliance does not accept this key: sign in again."})],

  // Token (auth.py)
  [/^newtoken must be at most 255 characters/, () => ({field: "newtoken", text: "Type at most 255 characters."})],
  [/^newtoken may only hold/, () => ({field: "newtoken",
    text: "Use only letters, digits and punctuation (ASCII ! to ~): no spaces or accented letters."})],
  [/update_token\.sh failed/, () => ({text: "The appliance could not set the token (its script failed): the old "
    + "token still works. Try again, or ask the vendor."})],
];

/** A message of the appliance (or of this page's own checks, which use its words) in words
 * for people: {text, field, fields, known}. */
export function explain(message) {
  const said = String(message ?? "").trim();
  for (const [pattern, make] of RULES) {
    const match = pattern.exec(said);
    if (match) return {field: null, fields: null, ...make(match, said), known: true};
  }
  return {text: said ? `The appliance refused this: ${said.replace(/\.?$/, ".")}` : "The appliance refused this.",
    field: null, fields: null, known: false};
}

/** A sentence for an error thrown by api.js (ApiError): what happened and what to do. */
export function sentence(error) {
  if (!error) return "";
  if (error.status === 0) return LOST;
  if (error.status === 403) return "The appliance does not accept this session's key: sign in again.";
  if (error.status === 413) return explain(error.message).known ? explain(error.message).text
    : "This file is too large for the appliance.";
  if (error.status === 507) return "The appliance's disk is full: free some space on it and try again.";
  if (error.status >= 500 && error.status !== 507 && !error.message) {
    return "The appliance failed to answer: try again, and send its logs (Support) to the vendor if it goes on.";
  }
  return explain(error.message).text;
}

/** A form's refusal shown where it belongs: at the field `fieldFor(explained)` names (a
 * wrapper from dom.js's field()), focused, with a pointer to it in `slot`; or, when the
 * appliance named no field of the form or could not be reached, as a sentence in `slot`. */
export function showRefusal(slot, error, fieldFor) {
  const explained = explain(error.message);
  const target = error.status !== 0 ? fieldFor(explained) : null;
  if (target) {
    target.setError(explained.text);
    target.input.focus();
    slot.show("error", "The appliance refused a setting: see the field marked below.");
  } else {
    slot.show("error", sentence(error));
  }
}

/** A job's failure (from GET /jobs/<name>: error-code, error-message) as a sentence. */
export function jobFailure(state) {
  const message = state?.["error-message"] || "";
  const explained = explain(message);
  if (explained.known) return explained.text;
  return message ? `It failed: ${message.replace(/\.?$/, ".")} See the log below.` : "It failed: see the log below.";
}
