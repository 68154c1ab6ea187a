// Checks Candor's customer-facing pages in Debian's Chromium (playwright-core, no browser
// download): each page works without JavaScript, makes no request to any other host, has no
// accessibility violation at all (axe-core), starts with a skip link for keyboard
// users, and is photographed at desktop and phone widths.
//
//   node pages.mjs BASE_URL SCREENSHOT_DIR PATH...
//   (env CANDOR_PAGES_COOKIE=name=value: visit signed in, with that session cookie)
//
// Exit code 0 when every check passes; every failure is printed.
import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, shots, ...paths] = process.argv.slice(2);
if (!base || !shots || paths.length === 0) {
  console.error('usage: node pages.mjs BASE_URL SCREENSHOT_DIR PATH...');
  process.exit(2);
}
const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const origin = new URL(base).origin;
const viewports = { desktop: { width: 1280, height: 900 }, phone: { width: 390, height: 844 } };
mkdirSync(shots, { recursive: true });
const cookie = process.env.CANDOR_PAGES_COOKIE;
async function newContext(options) {
  const context = await browser.newContext(options);
  if (cookie) {
    const [name, value] = cookie.split(/=(.*)/s);
    await context.addCookies([{ name, value, url: base, httpOnly: true, sameSite: 'Strict' }]);
  }
  return context;
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
const failures = [];
try {
  for (const path of paths) {
    const name = path.replace(/^\//, '').replace(/[^a-z0-9]+/gi, '-') || 'home';
    for (const [label, viewport] of Object.entries(viewports)) {
      // As a customer's browser sees it: no script needed, nothing fetched from elsewhere.
      const plain = await newContext({ viewport, javaScriptEnabled: false });
      const page = await plain.newPage();
      const foreign = [];
      page.on('request', (r) => { if (new URL(r.url()).origin !== origin) foreign.push(r.url()); });
      const response = await page.goto(base + path, { waitUntil: 'load' });
      if (response.status() !== 200) failures.push(`${path}: status ${response.status()}`);
      if (foreign.length) failures.push(`${path}: requests to other hosts: ${foreign.join(', ')}`);
      if (await page.locator('h1').count() !== 1) failures.push(`${path}: expected exactly one h1 without JavaScript`);
      await page.screenshot({ path: join(shots, `${name}-${label}-top.png`) });
      await page.keyboard.press('Tab');
      const focused = await page.evaluate(() => document.activeElement && document.activeElement.textContent.trim());
      if (focused !== 'Skip to the content') failures.push(`${path}: first Tab focuses "${focused}", not the skip link`);
      const horizontal = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
      if (horizontal) failures.push(`${path} (${label}): the page scrolls sideways`);
      await page.screenshot({ path: join(shots, `${name}-${label}.png`), fullPage: true });
      await plain.close();

      // axe-core needs script: injected into a separate context (CSP bypassed for the check only).
      const checked = await newContext({ viewport, bypassCSP: true });
      const axePage = await checked.newPage();
      await axePage.goto(base + path, { waitUntil: 'load' });
      await axePage.evaluate(axeSource);
      const results = await axePage.evaluate(() => window.axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] }));
      // Every finding fails the check, whatever axe's impact rating.
      for (const v of results.violations) {
        failures.push(`${path} (${label}): axe ${v.impact} ${v.id}: ${v.help} (${v.nodes.length} element(s), e.g. ${v.nodes[0]?.target})`);
      }
      console.log(`${path} (${label}): ${results.violations.length} axe finding(s)`);
      await checked.close();
    }
  }
} finally {
  await browser.close();
}
for (const f of failures) console.error(`FAIL ${f}`);
process.exit(failures.length ? 1 : 0);
