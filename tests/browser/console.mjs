// What the staff console's browser stories share: Debian's Chromium, a step checker, signing
// in through the test's OpenID Provider (tests/oidc/op.mjs, its own login form), and a watch
// for requests that leave Candor's origin once signed in.
import { chromium } from 'playwright-core';

export function check(ok, what) {
  if (!ok) throw new Error(what);
  console.log(`ok - ${what}`);
}

export function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

// Opens /console, follows its sign-in link to the provider, logs in as `login` and answers
// whatever else the provider asks, until the console is back. Returns the list of requests to
// other origins made from then on (it should stay empty).
export async function signIn(page, base, login) {
  const foreign = [];
  let signedIn = false;
  page.on('request', (r) => {
    if (signedIn && new URL(r.url()).origin !== new URL(base).origin) foreign.push(r.url());
  });
  await page.goto(`${base}/console`);
  await page.getByRole('link', { name: /Sign in with the company/ }).click();
  await page.waitForSelector('input[name="login"]');
  check(!page.url().startsWith(base), 'the sign-in link leads to the identity provider');
  for (let i = 0; i < 5 && !page.url().startsWith(base); i += 1) {
    if (await page.$('input[name="login"]')) {
      await page.fill('input[name="login"]', login);
      await page.fill('input[name="password"]', 'pw');
    }
    await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
  }
  await page.waitForURL(`${base}/console`, { timeout: 15000 });
  signedIn = true;
  return foreign;
}
