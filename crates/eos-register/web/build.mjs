// Build the page's script: src/app.js + pkijs + asn1js -> ../assets/app.js,
// and collect the bundled packages' licences into
// ../assets/THIRD-PARTY-LICENSES.txt. Run `npm ci && npm run build` here and
// commit both files.
import { readFileSync, writeFileSync, readdirSync, existsSync } from "node:fs";
import { join } from "node:path";
import * as esbuild from "esbuild";

const here = new URL(".", import.meta.url).pathname;
const assets = join(here, "..", "assets");

const result = await esbuild.build({
  entryPoints: [join(here, "src", "app.js")],
  bundle: true,
  format: "esm",
  target: ["chrome110", "firefox110", "safari16"],
  minify: true,
  legalComments: "none",
  metafile: true,
  outfile: join(assets, "app.js"),
  logLevel: "warning",
});

// Every package that went into the bundle, with its licence text.
const packages = new Set();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (m) packages.add(m[1]);
}
let text =
  "Third-party software bundled in app.js (built by crates/eos-register/web/build.mjs)\n";
for (const name of [...packages].sort()) {
  const dir = join(here, "node_modules", name);
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const file = readdirSync(dir).find((f) => /^(licen[cs]e|copying)/i.test(f));
  text += `\n${"=".repeat(78)}\n${name} ${pkg.version} — ${pkg.license}\n${"=".repeat(78)}\n`;
  text += file && existsSync(join(dir, file)) ? readFileSync(join(dir, file), "utf8") : "(no licence file shipped)\n";
}
writeFileSync(join(assets, "THIRD-PARTY-LICENSES.txt"), text);
console.log(`app.js: ${[...packages].sort().join(", ")}`);
