// Checks a running job's page in headless Chromium (Debian's, through
// playwright-core): it loads without console errors, the graph shows the
// job's operators, the rate figures change between two reads, a chosen
// key's chart has points; screenshots go to the output folder.
//
//   node tests/browser/page.mjs URL OUT_DIR OPERATOR...
//
// Exit 0 when every check holds; otherwise 1 with what failed.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [url, out, ...operators] = process.argv.slice(2);
if (!url || !out) {
  console.error("usage: page.mjs URL OUT_DIR OPERATOR...");
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const failures = [];
const errors = [];
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("requestfailed", (r) => errors.push("request failed: " + r.url()));
  await page.goto(url, { waitUntil: "load" });

  // The graph shows the job's operators.
  await page.waitForSelector("#graph svg g.node", { timeout: 15000 });
  const names = await page.$$eval("#graph svg g.node", (gs) => gs.map((g) => g.getAttribute("data-name")));
  for (const op of operators) if (!names.includes(op)) failures.push(`operator ${op} not in the graph: ${names.join(", ")}`);

  // The figures change between two reads.
  const read = () => page.$$eval("#graph svg [data-field=records]", (ts) => ts.map((t) => t.textContent).join(" | "));
  const first = await read();
  await page.screenshot({ path: join(out, "page-1.png"), fullPage: true });
  let second = first;
  for (let i = 0; i < 20 && second === first; i++) {
    await page.waitForTimeout(500);
    second = await read();
  }
  if (second === first) failures.push(`the graph's figures did not change in 10 s: ${first}`);
  const rate = await page.textContent("#rate-in");
  if (!/\/s$/.test(rate || "")) failures.push(`no input rate shown: ${rate}`);

  // A chosen key's chart has points: the first key listed.
  await page.waitForFunction(() => document.querySelector("#key-list option"), null, { timeout: 20000 });
  const key = await page.$eval("#key-list option", (o) => o.value);
  await page.fill("#chart-key", key);
  await page.click("#chart-form button");
  try {
    await page.waitForFunction(() => document.querySelectorAll("#chart svg circle.point").length >= 3, null, { timeout: 20000 });
  } catch {
    failures.push(`the chart of ${key} has fewer than 3 points: ${await page.textContent("#chart-note")}`);
  }
  const points = await page.$$eval("#chart svg circle.point", (c) => c.length);
  await page.screenshot({ path: join(out, "page-2.png"), fullPage: true });
  console.log(JSON.stringify({ operators: names, first, second, rate, key, points }));
} catch (e) {
  failures.push(String(e));
} finally {
  await browser.close();
}
if (errors.length) failures.push("console errors: " + errors.join("; "));
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
