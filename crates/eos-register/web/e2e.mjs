// Drive the registration page in headless Chromium (Playwright, the
// system's /usr/bin/chromium): get a certificate with a code, download the
// PKCS#12, register the address with another code. Each button is
// double-clicked: the page must send one request, not two (a second use of a
// single-use code is a failed attempt that counts towards backoff). Run by
// crates/eos-register/tests/page.rs; prints one JSON line with what happened.
//
// usage: node e2e.mjs <url> <cert-code> <p12-password> <out-dir> <spki-sha256-b64> [<ip-code>]
//        node e2e.mjs renew <url> <p12-password> <out-dir> <spki-sha256-b64> <user-data-dir>
//
// `renew`: the browser holds a client certificate (the test put it in the
// NSS database under $HOME/.pki/nssdb and told the profile in
// <user-data-dir> to select it for the page's origin, as Chromium
// remembers a user's choice); the page shows it and renews it.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const renewing = process.argv[2] === "renew";
const [url, certCode, password, outDir, spki, ipCode] = renewing
  ? [process.argv[3], null, ...process.argv.slice(4, 7), null]
  : process.argv.slice(2);
const executablePath = process.env.EOS_SEC_CHROMIUM || "/usr/bin/chromium";
const origin = new URL(url).origin;
const userDataDir = renewing
  ? process.argv[7]
  : mkdtempSync(join(tmpdir(), "eos-register-chromium-"));

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  acceptDownloads: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    // Trust exactly the test server's key (honoured only with a
    // --user-data-dir, which launchPersistentContext sets).
    `--ignore-certificate-errors-spki-list=${spki}`,
  ],
});
const result = { requests: [], console: [], secure: null };
const posts = [];
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("request", (r) => {
    result.requests.push(r.url());
    if (r.method() === "POST") posts.push(new URL(r.url()).pathname);
  });
  page.on("console", (m) => result.console.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => result.console.push(`pageerror: ${e.message}`));
  await page.goto(url, { waitUntil: "load" });
  await page.waitForSelector("body[data-ready=true]", { timeout: 15000 });
  result.secure = await page.evaluate(() => window.isSecureContext);
  if (renewing) {
    await renew(page);
  } else {
    await enrol(page);
  }
} finally {
  await context.close();
}
result.foreign = result.requests.filter((r) => !r.startsWith(origin) && !r.startsWith("blob:"));
console.log(JSON.stringify(result));

/** Save the download the link `selector` offers; its path and name. */
async function download(page, selector) {
  const [file] = await Promise.all([page.waitForEvent("download"), page.click(selector)]);
  result.filename = file.suggestedFilename();
  result.p12 = join(outDir, "downloaded.p12");
  await file.saveAs(result.p12);
}

async function renew(page) {
  result.renew_shown = await page.isVisible("#renew-section");
  result.renew_info = await page.textContent("#renew-info");
  if (!(await page.isVisible("#renew-submit"))) return;
  await page.fill("#renew-password", password);
  await page.dblclick("#renew-submit");
  await page.waitForSelector("#renew-download:not([hidden]), #renew-status[data-state=error]", {
    timeout: 30000,
  });
  result.renew_status = await page.textContent("#renew-status");
  await page.waitForTimeout(500);
  result.renew_requests = posts.filter((p) => p === "/v1/renew").length;
  if (await page.isVisible("#renew-download")) await download(page, "#renew-download");
}

async function enrol(page) {
  result.renew_shown = await page.isVisible("#renew-section");
  await page.fill("#cert-code", certCode);
  await page.fill("#cert-password", password);
  const countOf = (path) => result.requests.filter((r) => new URL(r).pathname === path).length;
  await page.dblclick("#cert-submit");
  await page.waitForSelector("#cert-download:not([hidden]), #cert-status[data-state=error]", {
    timeout: 30000,
  });
  result.cert_status = await page.textContent("#cert-status");
  // A second request, if any, is answered after the first: let it land.
  await page.waitForTimeout(500);
  result.cert_requests = countOf("/v1/cert");
  // A click that comes after the answer (a slow double click): the spent code
  // must not be sent again.
  await page.click("#cert-submit", { force: true, timeout: 2000 }).catch(() => {});
  await page.waitForTimeout(300);
  result.cert_requests_after_late_click = countOf("/v1/cert");
  if (await page.isVisible("#cert-download")) await download(page, "#cert-download");
  if (ipCode) {
    // A typo (the check symbol changed) is caught in the page: an error,
    // and no request.
    const last = ipCode.slice(-1).toUpperCase();
    const typo = ipCode.slice(0, -1) + (last === "7" ? "8" : "7");
    const before = result.requests.length;
    await page.fill("#ip-code", typo);
    await page.click("#ip-submit");
    await page.waitForSelector("#ip-status[data-state=error]", { timeout: 15000 });
    result.typo_status = await page.textContent("#ip-status");
    result.typo_requests = result.requests.length - before;
    await page.evaluate(() => {
      document.getElementById("ip-status").dataset.state = "";
    });
    await page.fill("#ip-code", ipCode);
    await page.dblclick("#ip-submit");
    await page.waitForSelector("#ip-status[data-state=ok], #ip-status[data-state=error]", {
      timeout: 15000,
    });
    await page.waitForTimeout(500);
    result.ip_status = await page.textContent("#ip-status");
    result.ip_requests = countOf("/v1/ip");
  }
}
