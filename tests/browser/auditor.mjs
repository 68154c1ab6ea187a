// An auditor's story in Debian's Chromium, signed in through the real OpenID Provider the test
// started (tests/oidc/op.mjs), keyboard and forms only, without JavaScript: the log filtered by
// action, day and customer; then the accountability page, where the whole log is checked and
// checks out.
//
//   node auditor.mjs CANDOR_URL CUSTOMER_ID TODAY SCREENSHOT_DIR
//
// Exit code 0 when every step passes; the first failure is printed.
import { check, launch, signIn } from './console.mjs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, customer, today, shots] = process.argv.slice(2);
if (!base || !customer || !today || !shots) {
  console.error('usage: node auditor.mjs CANDOR_URL CUSTOMER_ID TODAY SCREENSHOT_DIR');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const browser = await launch();
let failed = false;
try {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  const foreign = await signIn(page, base, 'dora');

  // The log, filtered: the requests opened today about one customer.
  await page.getByRole('link', { name: 'The log' }).click();
  await page.selectOption('#action', 'request.open');
  await page.fill('#since', today);
  await page.fill('#until', today);
  await page.fill('#customer', customer);
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Filter' }).click()]);
  const rows = page.locator('#entries tbody tr');
  const n = await rows.count();
  check(n === 2, `two entries match (${n})`);
  for (let i = 0; i < n; i += 1) {
    const text = await rows.nth(i).textContent();
    check(text.includes('request.open') && text.includes(customer) && text.includes(today),
      `entry ${i + 1} is a request opened today about that customer`);
  }
  check(new URL(page.url()).searchParams.get('action') === 'request.open', 'the filter is in the address, to share');
  await page.screenshot({ path: join(shots, 'console-log.png'), fullPage: true });
  // A day before anything happened: nothing.
  await page.fill('#since', '2001-01-01');
  await page.fill('#until', '2001-01-01');
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Filter' }).click()]);
  check(await page.locator('#empty').count() === 1, 'a day with no entry shows none');

  // Accountability: the whole log checked from inside.
  await page.getByRole('link', { name: 'Accountability' }).click();
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Check the whole log now' }).click()]);
  const result = await page.textContent('#log-check');
  check(result.includes('The log checks out.'), 'the whole log checks out');
  check((await page.textContent('#findings')).length > 0, 'the installation\'s own findings are listed');
  check((await page.textContent('#keys')).includes('kek v1'), 'and the key status');
  await page.screenshot({ path: join(shots, 'console-accountability.png'), fullPage: true });
  check(foreign.length === 0, `no request left Candor's origin from its pages (${foreign.join(', ')})`);
} catch (e) {
  failed = true;
  console.error(`not ok - ${e.message}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
