// Drives the web console in headless Chromium (Debian's, through playwright-core) and checks what
// a user sees. Usage: node console_check.js BASE_URL TOPIC RECORDS KEY VALUE DEPLOYMENT RECORDS_IN
// Prints one JSON line of what it saw; exits non-zero with the reason on the first failed check.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [base, topic, records, key, value, deployment, recordsIn] = process.argv.slice(2);
const TIMEOUT = 20000;
const profile = mkdtempSync(join(tmpdir(), "sluice-console-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run"],
});
const errors = [];
const seen = {};
let failure = null;
try {
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => { if (m.type() === "error") errors.push("console: " + m.text()); });
  page.on("pageerror", (e) => errors.push("page error: " + e.message));
  page.on("requestfailed", (r) => errors.push("request failed: " + r.url()));
  page.on("response", (r) => { if (r.status() >= 400) errors.push(`HTTP ${r.status()}: ${r.url()}`); });

  // Overview with its live charts.
  await page.goto(base + "/ui/");
  await page.waitForSelector("canvas", { timeout: TIMEOUT });

  // The topic list shows the test's topic with its record count.
  await page.goto(base + "/ui/#/topics");
  const cell = page.locator(`tr[data-topic="${topic}"] td.records`);
  await cell.waitFor({ timeout: TIMEOUT });
  seen.records = (await cell.textContent()).trim();
  if (seen.records !== records) throw new Error(`topic ${topic} shows ${seen.records} records, not ${records}`);

  // The message browser shows a produced record's key and value.
  await page.goto(`${base}/ui/#/topics/${encodeURIComponent(topic)}/0?offset=0`);
  await page.waitForSelector("tr.record", { timeout: TIMEOUT });
  const rows = await page.locator("tr.record").evaluateAll((trs) =>
    trs.map((tr) => ({ key: tr.querySelector(".key").textContent, value: tr.querySelector(".value").textContent })));
  seen.browsed = rows.length;
  if (!rows.some((r) => r.key === key && r.value === value)) {
    throw new Error(`the browser does not show ${key}=${value}: ${JSON.stringify(rows)}`);
  }
  // The search narrows the loaded page to matching records.
  await page.fill("#search", value.slice(0, 6));
  seen.visibleAfterSearch = await page.locator("tr.record:not(.hidden)").count();
  if (seen.visibleAfterSearch < 1 || seen.visibleAfterSearch >= rows.length) {
    throw new Error(`search kept ${seen.visibleAfterSearch} of ${rows.length} rows`);
  }
  // The same page as hex.
  const hexKey = Buffer.from(key).toString("hex").replace(/(..)/g, "$1 ").trim();
  await page.goto(`${base}/ui/#/topics/${encodeURIComponent(topic)}/0?offset=0&format=hex`);
  await page.waitForFunction((k) => [...document.querySelectorAll("tr.record .key")].some((c) => c.textContent === k),
    hexKey, { timeout: TIMEOUT });

  // A deployed transform shows its counters.
  await page.goto(base + "/ui/#/transforms");
  const stat = page.locator(`[data-transform="${deployment}"] [data-stat="records_in"]`);
  await stat.waitFor({ timeout: TIMEOUT });
  seen.recordsIn = (await stat.textContent()).trim();
  if (seen.recordsIn !== recordsIn) throw new Error(`transform ${deployment} shows records_in ${seen.recordsIn}, not ${recordsIn}`);

  // The other views load too (their errors are caught below).
  for (const [view, title] of [["groups", "Consumer groups"], ["connectors", "Connectors"], ["topics/" + encodeURIComponent(topic), "Topic " + topic]]) {
    await page.goto(`${base}/ui/#/${view}`);
    await page.waitForFunction((t) => document.querySelector("main h2")?.textContent === t, title, { timeout: TIMEOUT });
  }
} catch (e) {
  failure = e.message;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
if (!failure && errors.length) failure = "the page reported errors: " + errors.join("; ");
console.log(JSON.stringify({ ok: !failure, failure, seen, errors }));
process.exit(failure ? 1 : 0);
