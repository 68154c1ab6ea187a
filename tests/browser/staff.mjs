// A support agent's staff sign-in in Debian's Chromium, through the real OpenID Provider the
// test started (tests/oidc/op.mjs): open /console, follow the sign-in link, log in on the
// provider's own form, land on the console with the role and a pseudonym (never the person's
// name or e-mail), read a customer through the API with the browser's session cookie alone,
// find and serve that customer in the console (masked phone, a correction, break-glass), sign
// out, and find the link that signs out at the provider too.
//
//   node staff.mjs CANDOR_URL SUBJECT_ID SCREENSHOT_DIR
//
// Exit code 0 when every step passes; the first failure is printed.
import { check, launch } from './console.mjs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, subject, shots] = process.argv.slice(2);
if (!base || !subject || !shots) {
  console.error('usage: node staff.mjs CANDOR_URL SUBJECT_ID SCREENSHOT_DIR');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const browser = await launch();
let failed = false;
try {
  const page = await browser.newPage();
  const trail = [];
  page.on('response', (r) => trail.push(`${r.request().method()} ${r.status()} ${r.url()}`));
  page.on('requestfailed', (r) => trail.push(`FAILED ${r.url()} ${r.failure()?.errorText}`));
  await page.goto(`${base}/console`);
  await page.getByRole('link', { name: /Sign in with the company/ }).click();
  await page.waitForSelector('input[name="login"]');
  check(!page.url().startsWith(base), 'the sign-in link leads to the identity provider');
  // The provider's own forms: its login, then whatever else it asks (its consent screen).
  for (let i = 0; i < 5 && !page.url().startsWith(base); i += 1) {
    if (await page.$('input[name="login"]')) {
      await page.fill('input[name="login"]', 'alice');
      await page.fill('input[name="password"]', 'pw');
    }
    await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
  }
  await page.waitForURL(`${base}/console`, { timeout: 15000 }).catch(async (e) => {
    throw new Error(`${e.message.split('\n')[0]} at ${page.url()}: ${(await page.textContent('body'))?.slice(0, 300)}\n${trail.join('\n')}`);
  });
  const role = (await page.textContent('#role'))?.trim();
  const pseudonym = (await page.textContent('#pseudonym'))?.trim();
  check(role === 'support_agent', `signed in as support_agent (${role})`);
  check(/^stf_[0-9a-f]{32}$/.test(pseudonym ?? ''), 'the console shows a pseudonym');
  check(!(await page.content()).includes('alice'), 'the console shows no name or e-mail address');
  await page.screenshot({ path: join(shots, 'staff-console.png'), fullPage: true });

  const cookies = await page.context().cookies(base);
  const session = cookies.find((c) => c.name === 'candor_staff');
  check(session && session.httpOnly && session.sameSite === 'Strict', 'the session cookie is HttpOnly and SameSite=Strict');

  // The pages allow no script to call out (their CSP), so the API is called with the browser
  // context's own cookie store, as a console script on this origin would be.
  const api = (id) => page.context().request.get(`${base}/v1/subjects/${id}`, {
    headers: { 'candor-purpose': 'customer_support' },
  });
  const response = await api(subject);
  const read = { status: response.status(), body: await response.json() };
  check(read.status === 200 && Array.isArray(read.body.masked) && read.body.masked.includes('phone'),
    `the page reads the customer with the session (${read.status}), phone masked`);

  // The console's support story, clicked through: find Ada under customer_support, see the
  // masked phone marked, correct her name, open break-glass with a reason, see the banner.
  await page.getByRole('link', { name: 'Find a customer' }).click();
  await page.getByLabel(/customer_support/).check();
  await page.selectOption('#field', 'email');
  await page.fill('#value', 'ada@example.com');
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Find' }).click()]);
  check(page.url() === `${base}/console/customers/${subject}?purpose=customer_support`,
    `the search opens the record, no value in its address (${page.url()})`);
  const phoneRow = () => page.textContent('tr[data-field="phone"]');
  check((await phoneRow()).includes('masked') && !(await phoneRow()).includes('2079460000'), 'the phone is shown masked and marked so');
  await page.selectOption('#correct-field', 'full_name');
  await page.fill('#correct-value', 'Ada King');
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Store the correction' }).click()]);
  check((await page.textContent('#done')).includes('correction is stored'), 'the correction is confirmed');
  check((await page.textContent('tr[data-field="full_name"]')).includes('Ada King'), 'the record shows the corrected name');
  await page.fill('#reason', 'The customer is on the phone and the courier needs the full number today');
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Open break-glass' }).click()]);
  check((await page.textContent('#break-glass')).includes('until'), 'a banner says until when break-glass lasts');
  check((await phoneRow()).includes('+442079460000'), 'under break-glass the phone is shown in full');
  await page.screenshot({ path: join(shots, 'staff-console-break-glass.png'), fullPage: true });

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForSelector('text=You are signed out');
  const link = page.getByRole('link', { name: /Also sign out at the company/ });
  check(((await link.getAttribute('href')) ?? '').includes('/session/end?client_id=candor'),
    'the signed-out page links to the provider\'s end-session endpoint');
  check(!(await page.context().cookies(base)).some((c) => c.name === 'candor_staff'), 'the session cookie is gone');
  const after = (await api(subject)).status();
  check(after === 401, `after signing out the API refuses (${after})`);
} catch (e) {
  failed = true;
  console.error(`not ok - ${e.message}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
