// A customer's visit to the privacy center in Debian's Chromium, with JavaScript off (the pages
// need none): sign in through a one-time link, read their data, turn a marketing consent on (and
// see it through the API), find the emergency access staff opened, download the export and the
// proof that the history is complete, correct
// a detail, delete the account and read the certificate; the used link is refused afterwards, as
// soon as it is opened.
//
//   node story.mjs BASE_URL LINK_PATH SUBJECT_ID SCREENSHOT_DIR
//   (env CANDOR_STORY_TOKEN: a shop_backend token, to check the consent through the API;
//    CANDOR_STORY_CODE: the code of a message registered for the customer)
//
// Exit code 0 when every step passes; the first failure is printed.
import { chromium } from 'playwright-core';
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, linkPath, subject, shots] = process.argv.slice(2);
const token = process.env.CANDOR_STORY_TOKEN;
if (!base || !linkPath || !subject || !shots || !token) {
  console.error('usage: CANDOR_STORY_TOKEN=... node story.mjs BASE_URL LINK_PATH SUBJECT_ID SCREENSHOT_DIR');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const origin = new URL(base).origin;

function check(ok, what) {
  if (!ok) throw new Error(what);
  console.log(`ok - ${what}`);
}

async function api(path, purpose) {
  const r = await fetch(base + path, { headers: { authorization: `Bearer ${token}`, 'candor-purpose': purpose } });
  return { status: r.status, body: await r.json().catch(() => null) };
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
let failed = false;
try {
  const context = await browser.newContext({ javaScriptEnabled: false, acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const foreign = [];
  page.on('request', (r) => { if (new URL(r.url()).origin !== origin) foreign.push(r.url()); });

  // 1. Sign in through the link (a POST from the "Continue" page).
  await page.goto(base + linkPath);
  await page.getByRole('button', { name: 'Continue to your privacy center' }).click();
  await page.waitForURL(base + '/privacy/me');
  check(await page.getByRole('heading', { level: 1 }).textContent() === 'My data', 'signed in and on "My data"');
  check((await page.locator('main').textContent()).includes('ada@example.com'), 'my e-mail address is shown');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'candor_session');
  check(session && session.httpOnly && session.sameSite === 'Strict', 'the session cookie is HttpOnly and SameSite=Strict');

  // 2. Turn marketing by e-mail on; the API sees it at once.
  await page.getByRole('link', { name: 'Choices' }).click();
  await page.getByLabel('By e-mail').check();
  await page.getByRole('button', { name: 'Save my choices' }).click();
  check((await page.getByRole('status').textContent()).includes('1 choice changed'), 'the choice was saved');
  check(await page.getByLabel('By e-mail').isChecked(), 'the box stays ticked');
  const consents = await api(`/v1/subjects/${subject}/consents/history`, 'privacy_requests');
  const entry = consents.body.entries.find((e) => e.purpose === 'marketing' && e.channel === 'email');
  check(entry && entry.action === 'grant' && entry.method === 'privacy_center', 'the API shows the grant, made in the privacy center');

  // 3. Who accessed my data: the emergency access is highlighted, with its reason.
  await page.getByRole('link', { name: 'Who accessed my data' }).click();
  const alert = await page.locator('li.alert').first().textContent();
  check(alert.includes('Customer-service staff') && alert.includes('chargeback dispute'), 'emergency access is listed with its reason');
  check(await page.locator('tr.alert').count() >= 1, 'emergency reads are highlighted in the log');
  await page.screenshot({ path: join(shots, 'story-access.png'), fullPage: true });

  // 4. Download my data (JSON).
  await page.getByRole('link', { name: 'Download my data' }).click();
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Download as JSON' }).click(),
  ]);
  const exported = JSON.parse(readFileSync(await download.path(), 'utf8'));
  check(exported.subject_id === subject && JSON.stringify(exported.fields).includes('ada@example.com'), 'the download holds my data');
  // The proof that the history is complete, as a file for `candor verify history`.
  const [proof] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Download the proof (history-proof.json)' }).click(),
  ]);
  check(proof.suggestedFilename() === 'history-proof.json', 'the proof downloads as history-proof.json');
  const bundle = JSON.parse(readFileSync(await proof.path(), 'utf8'));
  check(bundle.format === 'candor-history-bundle/v1' && bundle.subject === subject && bundle.entries.length > 0,
    'the proof lists my history with its checkpoint');

  // 5. Correct my phone number.
  await page.getByRole('link', { name: 'Correct my data' }).click();
  await page.getByLabel('Phone').fill('+44 20 7946 0999');
  await page.getByRole('button', { name: 'Save corrections' }).click();
  check((await page.getByRole('status').textContent()).includes('Phone'), 'the correction was saved');

  // 6. Check a message: the shipping e-mail is listed, and its code is genuine.
  await page.getByRole('link', { name: 'Check a message' }).click();
  check((await page.locator('table').textContent()).includes('Your order 1042 has shipped'), 'the messages sent to me are listed');
  await page.getByLabel('Code from the message').fill(process.env.CANDOR_STORY_CODE ?? '');
  await page.getByRole('button', { name: 'Check' }).click();
  check((await page.getByRole('status').textContent()).includes('Genuine.'), 'the code of a real message checks out');
  await page.getByLabel('Code from the message').fill('ABCDE-FGHJK');
  await page.getByRole('button', { name: 'Check' }).click();
  check((await page.getByRole('alert').textContent()).includes('We do not know this code.'), 'a made-up code does not');

  // 7. Delete my account and read the certificate.
  await page.getByRole('link', { name: 'Delete my account' }).click();
  await page.getByLabel('I understand that my account and my data will be deleted for good.').check();
  await page.getByRole('button', { name: 'Delete my account' }).click();
  check(await page.getByRole('heading', { level: 1 }).textContent() === 'Your account was deleted', 'the account was deleted');
  check((await page.locator('pre.certificate').textContent()).includes('candor-erasure-certificate/1'), 'the signed certificate is shown');
  await page.screenshot({ path: join(shots, 'story-erased.png'), fullPage: true });
  const gone = await api(`/v1/subjects/${subject}`, 'account');
  check(gone.status === 404, 'the API no longer finds the customer');

  // 8. The used link is refused as soon as it is opened.
  const refused = await page.goto(base + linkPath);
  check(refused.status() === 410 && await page.getByRole('heading', { level: 1 }).textContent() === 'This sign-in link cannot be used', 'opening the used link again says it cannot be used');
  check(await page.getByRole('button', { name: 'Continue to your privacy center' }).count() === 0, 'with nothing to press on');
  check(foreign.length === 0, `no request to any other host (${foreign.join(', ')})`);
  await context.close();
} catch (e) {
  failed = true;
  console.error(`FAIL ${e.message}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
