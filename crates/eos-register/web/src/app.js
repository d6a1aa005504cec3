// The registration page's script. Bundled with pkijs and asn1js by
// build.mjs into ../assets/app.js (committed); served from the same origin
// under a CSP that allows no other script.
//
// The private key is generated here with WebCrypto and never leaves the
// page: only the CSR is sent. The certificate comes back and is packed with
// the key into a password-protected PKCS#12 file (PBES2: PBKDF2-SHA-256 +
// AES-256-CBC for the key and certificates; HMAC-SHA-256 integrity), which
// the user imports into the browser or OS store.

import * as asn1js from "asn1js";
import * as pkijs from "pkijs";

const OID_COMMON_NAME = "2.5.4.3";
const OID_FRIENDLY_NAME = "1.2.840.113549.1.9.20";
const OID_LOCAL_KEY_ID = "1.2.840.113549.1.9.21";
const BAG_CERT = "1.2.840.113549.1.12.10.1.3";
const BAG_SHROUDED_KEY = "1.2.840.113549.1.12.10.1.2";
const PBE_ITERATIONS = 100000;

/** Normalise a typed code the way the server reads it. */
export function normaliseCode(input) {
  return input.replace(/[\s-]/g, "").toUpperCase();
}

// The written form of a code, as eos-codes reads it (crates/eos-codes/src/
// format.rs): Crockford base32, `I`/`L` read as 1 and `O` as 0, an optional
// `EOS` prefix, 36 symbols, the last a Damm check over GF(32). Checked here
// only to catch a typo before anything is sent; the server decides.
const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CODE_LEN = 36;
const PREFIX = "EOS";

function symbolValue(c) {
  const u = c.toUpperCase();
  return ALPHABET.indexOf(u === "I" || u === "L" ? "1" : u === "O" ? "0" : u);
}

function timesX(v) {
  const w = (v & 31) << 1;
  return w & 32 ? (w ^ 0b100101) & 31 : w;
}

/** Why a typed code cannot be a security code, or null when it may be. */
export function codeProblem(input) {
  let chars = [...normaliseCode(input)];
  const prefixed =
    chars.length !== CODE_LEN &&
    chars.length >= PREFIX.length &&
    [...PREFIX].every((c, i) => symbolValue(c) === symbolValue(chars[i]));
  if (prefixed) chars = chars.slice(PREFIX.length);
  if (chars.length !== CODE_LEN) {
    return `A security code has ${CODE_LEN} symbols after EOS; this one has ${chars.length}.`;
  }
  let fold = 0;
  for (const [i, c] of chars.entries()) {
    const v = symbolValue(c);
    if (v < 0) return `Symbol ${i + 1} of the code (“${c}”) is not used in security codes.`;
    fold = timesX(fold) ^ v;
  }
  if (fold !== 0) {
    return "This code does not check out: a symbol is mistyped or two are swapped. Please compare it with the one you were given.";
  }
  return null;
}

function pem(label, der) {
  const bytes = new Uint8Array(der);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  const b64 = btoa(bin).replace(/(.{64})/g, "$1\n");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

function pemBlocks(text, label) {
  const re = new RegExp(`-----BEGIN ${label}-----([^-]+)-----END ${label}-----`, "g");
  const out = [];
  for (const m of text.matchAll(re)) {
    const bin = atob(m[1].replace(/\s+/g, ""));
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    out.push(bytes.buffer);
  }
  return out;
}

/** A fresh P-256 key pair (the private key is extractable only so that it
 * can go into the PKCS#12 file). */
export async function generateKeyPair() {
  return crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ]);
}

/** A PKCS#10 CSR for the key, PEM. The subject is a placeholder: the CA
 * takes the identity from the code, never from the CSR. */
export async function buildCsr(keys) {
  const csr = new pkijs.CertificationRequest();
  csr.version = 0;
  csr.subject.typesAndValues.push(
    new pkijs.AttributeTypeAndValue({
      type: OID_COMMON_NAME,
      value: new asn1js.Utf8String({ value: "eos-register" }),
    }),
  );
  csr.attributes = [];
  await csr.subjectPublicKeyInfo.importKey(keys.publicKey);
  await csr.sign(keys.privateKey, "SHA-256");
  return pem("CERTIFICATE REQUEST", csr.toSchema().toBER(false));
}

function attributes(name, localId) {
  return [
    new pkijs.Attribute({
      type: OID_FRIENDLY_NAME,
      values: [new asn1js.BmpString({ value: name })],
    }),
    new pkijs.Attribute({
      type: OID_LOCAL_KEY_ID,
      values: [new asn1js.OctetString({ valueHex: localId })],
    }),
  ];
}

/** Pack the key, its certificate and the CA chain into a PKCS#12 file
 * protected by `password`. Returns the DER bytes. */
export async function buildPkcs12(keys, certificatePem, chainPem, password, name) {
  const passwordBytes = new TextEncoder().encode(password).buffer;
  const localId = crypto.getRandomValues(new Uint8Array(8)).buffer;
  const leaf = pkijs.Certificate.fromBER(pemBlocks(certificatePem, "CERTIFICATE")[0]);
  const chain = pemBlocks(chainPem, "CERTIFICATE").map((der) => pkijs.Certificate.fromBER(der));
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  const keyInfo = pkijs.PrivateKeyInfo.fromBER(pkcs8);
  const encryption = {
    password: passwordBytes,
    contentEncryptionAlgorithm: { name: "AES-CBC", length: 256 },
    hmacHashAlgorithm: "SHA-256",
    iterationCount: PBE_ITERATIONS,
  };
  const certBags = [
    new pkijs.SafeBag({
      bagId: BAG_CERT,
      bagValue: new pkijs.CertBag({ parsedValue: leaf }),
      bagAttributes: attributes(name, localId),
    }),
    ...chain.map(
      (c) => new pkijs.SafeBag({ bagId: BAG_CERT, bagValue: new pkijs.CertBag({ parsedValue: c }) }),
    ),
  ];
  const keyBag = new pkijs.SafeBag({
    bagId: BAG_SHROUDED_KEY,
    bagValue: new pkijs.PKCS8ShroudedKeyBag({ parsedValue: keyInfo }),
    bagAttributes: attributes(name, localId),
  });
  const pfx = new pkijs.PFX({
    parsedValue: {
      integrityMode: 0, // password-based integrity (HMAC)
      authenticatedSafe: new pkijs.AuthenticatedSafe({
        parsedValue: {
          safeContents: [
            { privacyMode: 1, value: new pkijs.SafeContents({ safeBags: certBags }) },
            { privacyMode: 0, value: new pkijs.SafeContents({ safeBags: [keyBag] }) },
          ],
        },
      }),
    },
  });
  await keyBag.bagValue.makeInternalValues(encryption);
  await pfx.parsedValue.authenticatedSafe.makeInternalValues({ safeContents: [encryption, {}] });
  await pfx.makeInternalValues({
    password: passwordBytes,
    iterations: PBE_ITERATIONS,
    pbkdf2HashAlgorithm: "SHA-256",
    hmacHashAlgorithm: "SHA-256",
  });
  return pfx.toSchema().toBER(false);
}

// Code-based requests omit credentials. A renewal needs the browser's
// client certificate, which Chromium and Firefox present only on requests
// with credentials (an uncredentialed fetch gets a connection without one).
async function post(path, body, credentials = "omit") {
  return answer(
    await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials,
      cache: "no-store",
    }),
  );
}

async function answer(resp) {
  let json = {};
  try {
    json = await resp.json();
  } catch {
    json = { error: "bad-response", message: `unexpected answer (${resp.status})` };
  }
  return { ok: resp.ok, json };
}

function say(el, text, kind) {
  el.textContent = text;
  el.dataset.state = kind;
}

function explain(json) {
  if (json.error === "throttled" || json.error === "rate-limited") {
    return `${json.message} (retry in ${json.retry_after ?? "a few"} s)`;
  }
  return json.message || json.error || "failed";
}

/** Run `handler` on the form's submit, one at a time: its button is disabled
 * until the handler is done, so a double click sends one request (a second
 * use of a single-use code would be a failed attempt that counts towards the
 * address's backoff). A handler that returns `true` has used what the form
 * holds (the code is spent, the certificate renewed): the button stays
 * disabled until the form is edited, so a click that comes late — after the
 * answer — cannot send the spent code again. */
function onSubmit(form, handler) {
  const button = form.querySelector("button[type=submit]");
  let busy = false;
  let spent = false;
  form.addEventListener("input", () => {
    if (spent && !busy) {
      spent = false;
      button.disabled = false;
    }
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (busy || spent) return;
    busy = true;
    button.disabled = true;
    try {
      spent = (await handler()) === true;
    } finally {
      busy = false;
      button.disabled = spent;
    }
  });
}

/** A new key in this browser, its CSR sent by `request(csr)`, and the
 * certificate that comes back packed with the key into a PKCS#12 file
 * offered at `link`. Both ways to a certificate (a code, or the
 * certificate being renewed) end here. */
async function issueAndPack(status, link, password, request) {
  try {
    say(status, "Generating a key pair in this browser…", "busy");
    const keys = await generateKeyPair();
    const csr = await buildCsr(keys);
    say(status, "Requesting the certificate…", "busy");
    const { ok, json } = await request(csr);
    if (!ok) {
      say(status, explain(json), "error");
      return false;
    }
    say(status, "Packing the certificate and key…", "busy");
    const name = `entityOS ${json.space} ${json.user}`;
    const p12 = await buildPkcs12(keys, json.certificate, json.chain, password, name);
    const blob = new Blob([p12], { type: "application/x-pkcs12" });
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.download = `eos-${json.space}-${json.user}.p12`;
    link.hidden = false;
    say(
      status,
      `Certificate ${json.serial} for ${json.user} in ${json.space}, valid until ${json.not_after}. Download it and import it with your password.`,
      "ok",
    );
    return true;
  } catch (e) {
    say(status, `This browser could not make the key or the file: ${e.message ?? e}`, "error");
    return false;
  }
}

function passwordProblem(password) {
  return password.length < 8 ? "Choose a file password of at least 8 characters." : null;
}

function wireCertificate(doc) {
  const form = doc.getElementById("cert-form");
  const status = doc.getElementById("cert-status");
  const link = doc.getElementById("cert-download");
  onSubmit(form, async () => {
    link.hidden = true;
    const code = normaliseCode(doc.getElementById("cert-code").value);
    const password = doc.getElementById("cert-password").value;
    const problem = codeProblem(code) ?? passwordProblem(password);
    if (problem) {
      say(status, problem, "error");
      return;
    }
    return issueAndPack(status, link, password, (csr) => post("/v1/cert", { code, csr }));
  });
}

/** When this browser presented a certificate of the entityOS CA, show whose
 * it is and until when, and offer to renew it: a new key here, the same
 * PKCS#12 file, no code (the certificate is the credential). */
async function wireRenewal(doc) {
  const section = doc.getElementById("renew-section");
  const info = doc.getElementById("renew-info");
  const form = doc.getElementById("renew-form");
  const status = doc.getElementById("renew-status");
  const link = doc.getElementById("renew-download");
  let presented;
  try {
    presented = await answer(
      await fetch("/v1/renew", { credentials: "same-origin", cache: "no-store" }),
    );
  } catch {
    return;
  }
  const { ok, json } = presented;
  // No certificate presented: nothing to renew, nothing to show.
  if (!ok && ["renewal-no-certificate", "ca-unavailable"].includes(json.error)) return;
  section.hidden = false;
  if (!ok) {
    say(info, explain(json), "error");
    form.hidden = true;
    return;
  }
  say(
    info,
    `This browser presented certificate ${json.serial} for ${json.user} in ${json.space}, valid until ${json.not_after}.`,
    "ok",
  );
  if (!json.renewable) {
    form.hidden = true;
    say(status, `It can be renewed from ${json.renewable_from}.`, "");
    return;
  }
  onSubmit(form, async () => {
    link.hidden = true;
    const password = doc.getElementById("renew-password").value;
    const problem = passwordProblem(password);
    if (problem) {
      say(status, problem, "error");
      return;
    }
    return issueAndPack(status, link, password, (csr) =>
      post("/v1/renew", { csr }, "same-origin"),
    );
  });
}

function wireSimple(doc, prefix, path, describe) {
  const form = doc.getElementById(`${prefix}-form`);
  const status = doc.getElementById(`${prefix}-status`);
  onSubmit(form, async () => {
    const code = normaliseCode(doc.getElementById(`${prefix}-code`).value);
    const problem = codeProblem(code);
    if (problem) {
      say(status, problem, "error");
      return;
    }
    say(status, "Sending…", "busy");
    try {
      const { ok, json } = await post(path, { code });
      say(status, ok ? describe(json) : explain(json), ok ? "ok" : "error");
      return ok;
    } catch (e) {
      say(status, `The request failed: ${e.message ?? e}`, "error");
      return false;
    }
  });
}

function start(doc) {
  wireCertificate(doc);
  wireSimple(doc, "ip", "/v1/ip", (j) =>
    j.rule === "added"
      ? `Registered ${j.cidr} for ${j.space}.`
      : `${j.cidr} was already registered for ${j.space}.`,
  );
  wireSimple(doc, "recover", "/v1/recover", (j) =>
    j.replaced
      ? `Recovered: ${j.cidr} replaces ${j.replaced} for ${j.user} in ${j.space}.`
      : `Recovered: ${j.cidr} registered for ${j.user} in ${j.space}.`,
  );
  wireRenewal(doc).finally(() => {
    doc.body.dataset.ready = "true";
  });
}

if (typeof document !== "undefined") {
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => start(document));
  } else {
    start(document);
  }
}
