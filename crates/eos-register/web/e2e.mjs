// Drive the registration page in headless Chromium (Playwright, the
// system's /usr/bin/chromium): get a certificate with a code, download the
// PKCS#12, register the address with another code. Each button is
// double-clicked: the page must send one request, not two (a second use of a
// single-use code is a failed attempt that counts towards backoff). Run by
// crates/eos-register/tests/page.rs; prints one JSON line with what happened.
//
// usage: node e2e.mjs <url> <cert-code> <p12-password> <out-dir> <spki-sha256-b64> [<ip-code>]
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [url, certCode, password, outDir, spki, ipCode] = process.argv.slice(2);
const executablePath = process.env.EOS_SEC_CHROMIUM || "/usr/bin/chromium";
const origin = new URL(url).origin;
const userDataDir = mkdtempSync(join(tmpdir(), "eos-register-chromium-"));

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
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("request", (r) => result.requests.push(r.url()));
  page.on("console", (m) => result.console.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => result.console.push(`pageerror: ${e.message}`));
  await page.goto(url, { waitUntil: "load" });
  await page.waitForSelector("body[data-ready=true]", { timeout: 15000 });
  result.secure = await page.evaluate(() => window.isSecureContext);

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
  if (await page.isVisible("#cert-download")) {
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.click("#cert-download"),
    ]);
    result.filename = download.suggestedFilename();
    result.p12 = join(outDir, "downloaded.p12");
    await download.saveAs(result.p12);
  }
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
} finally {
  await context.close();
}
result.foreign = result.requests.filter((r) => !r.startsWith(origin) && !r.startsWith("blob:"));
console.log(JSON.stringify(result));
