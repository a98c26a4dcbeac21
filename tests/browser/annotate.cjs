// The Annotate page in a real headless Chromium against a running server:
// pick a CREAK sample, annotate it, and see three non-empty streamed panels.
// Saves screenshots at 1366x768 and 390x844.
//
// Usage: node annotate.cjs BASE_URL SCREENSHOT_DIR
// Env: TEACHERLM_CHROMIUM (default /usr/bin/chromium); playwright-core on NODE_PATH
// (CommonJS, since ES modules ignore NODE_PATH).
// Run by backend/tests/browser.rs, which spawns the server.

const { chromium } = require("playwright-core");
const { mkdirSync } = require("node:fs");

async function main() {
const [base, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.TEACHERLM_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const fail = async (page, message) => {
  await page.screenshot({ path: `${shots}/failure.png`, fullPage: true }).catch(() => {});
  console.error(message);
  await browser.close();
  process.exit(1);
};

for (const [name, viewport] of [["desktop", { width: 1366, height: 768 }],
                                ["phone", { width: 390, height: 844 }]]) {
  const page = await browser.newPage({ viewport });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(`${base}/annotate`);
  await page.getByRole("heading", { name: "Annotate", level: 1 }).waitFor();

  // The empty state before anything runs.
  const panels = page.locator("article.panel");
  if ((await panels.count()) !== 3) await fail(page, "expected three panels");
  if (name === "desktop") await page.screenshot({ path: `${shots}/annotate-empty-${viewport.width}x${viewport.height}.png` });

  // A real CREAK sample through the server's sample picker.
  await page.selectOption("#dataset", "creak");
  await page.click("#load-sample");
  await page.waitForFunction(() =>
    document.querySelector("#question").value.includes("Determine the correctness")
    || document.querySelector(".annotate-form [role=alert]"));
  const pickError = await page.locator(".annotate-form [role=alert]").allInnerTexts();
  if (pickError.length) await fail(page, `the sample picker failed: ${pickError.join(" ")}`);
  const options = await page.locator(".option-row input").evaluateAll((xs) => xs.map((x) => x.value));
  if (options.join(",") !== "True,False") await fail(page, `CREAK options were ${options}`);

  // Annotate; watch the text arrive in every panel.
  await page.click("#annotate");
  await page.waitForSelector('article.panel[data-state="busy"]', { timeout: 60000 });
  try {
    await page.waitForFunction(
      () => [...document.querySelectorAll("article.panel")].every((p) => p.dataset.state === "done"),
      null, { timeout: 180000 });
  } catch (e) {
    await fail(page, `the panels did not all finish: ${e}`);
  }
  const texts = await page.locator("article.panel .annotation-text").allInnerTexts();
  if (texts.length !== 3 || texts.some((t) => t.trim() === "")) {
    await fail(page, `empty annotation panels: ${JSON.stringify(texts)}`);
  }
  const kinds = await panels.evaluateAll((ps) => ps.map((p) => p.dataset.kind));
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) await fail(page, `the page is ${overflow}px wider than the ${name} viewport`);
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: `${shots}/annotate-${viewport.width}x${viewport.height}.png`, fullPage: true });
  if (errors.length) await fail(page, `console errors: ${errors.join("\n")}`);
  console.log(`${name}: ${kinds.join(", ")} -> ${texts.map((t) => t.length).join(", ")} chars`);
  await page.close();
}

await browser.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
