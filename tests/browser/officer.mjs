// A privacy officer's day in Debian's Chromium, signed in through the real OpenID Provider the
// test started (tests/oidc/op.mjs): the request queue with the overdue erasure first and
// highlighted; that request opened, assigned to her, answered by erasing the customer (typed
// confirmation, signed certificate) and closed; the access request opened, its report
// downloaded as a file, and its duplicate refused with a reason. Keyboard only where a person
// would type; no script on Candor's pages.
//
//   node officer.mjs CANDOR_URL ERASURE_ID ACCESS_ID DUPLICATE_ID SCREENSHOT_DIR
//
// Exit code 0 when every step passes; the first failure is printed.
import { check, launch, signIn } from './console.mjs';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const [base, erasure, access, duplicate, shots] = process.argv.slice(2);
if (!base || !erasure || !access || !duplicate || !shots) {
  console.error('usage: node officer.mjs CANDOR_URL ERASURE_ID ACCESS_ID DUPLICATE_ID SCREENSHOT_DIR');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const browser = await launch();
let failed = false;
try {
  const context = await browser.newContext({ javaScriptEnabled: false, acceptDownloads: true });
  const page = await context.newPage();
  const foreign = await signIn(page, base, 'dora');
  check((await page.textContent('#role'))?.trim() === 'privacy_team', 'signed in as privacy_team');

  // The queue: the overdue erasure first, highlighted.
  await page.getByRole('link', { name: 'Privacy requests' }).click();
  const rows = page.locator('tr[data-request]');
  check((await rows.first().getAttribute('data-request')) === erasure, 'the overdue erasure comes first');
  check((await rows.first().getAttribute('class'))?.includes('alert'), 'and is highlighted');
  check((await rows.first().textContent()).includes('overdue by'), 'and says by how much it is overdue');
  await page.screenshot({ path: join(shots, 'console-requests.png'), fullPage: true });

  // Open it, take it, erase the customer, close it.
  await Promise.all([page.waitForNavigation(), rows.first().getByRole('link', { name: 'erasure' }).click()]);
  check(page.url() === `${base}/console/requests/${erasure}`, 'the request opens on its own page');
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Assign it to me' }).click()]);
  check((await page.textContent('#assignee')).trim() === 'you', 'the request is hers');
  await page.screenshot({ path: join(shots, 'console-request.png'), fullPage: true });
  await page.getByLabel(/to confirm/).fill('erase');
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Erase this customer' }).click()]);
  const certificate = JSON.parse(await page.textContent('#certificate'));
  check(certificate.signature && typeof certificate.signature === 'object', 'the signed certificate is shown');
  await page.screenshot({ path: join(shots, 'console-erased.png'), fullPage: true });
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Mark the request completed' }).click()]);
  check((await page.textContent('#done')).includes('completed'), 'the request is closed as completed');
  check(!(await page.content()).includes(erasure), 'and has left the queue');

  // The access request: its report, downloaded as a file.
  await page.goto(`${base}/console/requests/${access}`);
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: /Download the access report/ }).click(),
  ]);
  const file = join(shots, 'access-report.json');
  await download.saveAs(file);
  const report = JSON.parse(readFileSync(file, 'utf8'));
  check(Array.isArray(report.fields) && report.fields.some((f) => f.field === 'email'),
    `the access report is downloaded as ${download.suggestedFilename()}`);

  // Its duplicate, refused with a reason chosen from the list.
  await page.goto(`${base}/console/requests/${duplicate}`);
  await page.getByLabel(/^excessive/).check();
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Refuse the request' }).click()]);
  check((await page.textContent('#done')).includes('rejected'), 'the duplicate is refused');
  check(foreign.length === 0, `no request left Candor's origin from its pages (${foreign.join(', ')})`);
} catch (e) {
  failed = true;
  console.error(`not ok - ${e.message}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
