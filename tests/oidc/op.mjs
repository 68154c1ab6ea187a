// A real, certified OpenID Provider (oidc-provider) on loopback for Candor's staff sign-in
// tests. Usage: node op.mjs <client_secret>. Prints `issuer: <url>` once it
// listens. Its own development login form accepts any password; the accounts below decide the
// `groups` claim. `/__test/tamper?mode=payload|none|off` makes the token endpoint's ID tokens
// arrive altered (a changed claim under the provider's signature, or `alg: none` unsigned), as
// an attacker on the path would send them.
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const [clientSecret] = process.argv.slice(2);
const ACCOUNTS = {
  alice: { groups: ['support-team'], email: 'alice.agent@staff.example' },
  bob: { groups: ['sales'], email: 'bob@staff.example' },
  carol: { groups: ['support-team', 'privacy-team'], email: 'carol@staff.example' },
  dora: { groups: 'privacy-team', email: 'dora@staff.example' },
};

const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'candor',
    client_secret: clientSecret,
    // A loopback redirect of a native client matches on any port (RFC 8252 §7.3), so the
    // provider can start before Candor has picked its port.
    application_type: 'native',
    redirect_uris: ['http://127.0.0.1/console/callback'],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'groups'],
  claims: { openid: ['sub'], email: ['email'], groups: ['groups'] },
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const account = ACCOUNTS[id] ?? { groups: [], email: `${id}@staff.example` };
    return { accountId: id, async claims() { return { sub: id, ...account }; } };
  },
  // Consent is the company's, given once for its own application: skip the consent screen.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid email groups');
    await grant.save();
    return grant;
  },
});

let tamper = 'off';
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/tamper') {
    tamper = ctx.query.mode;
    ctx.body = { tamper };
    return;
  }
  await next();
  if (ctx.path === '/token' && ctx.body && ctx.body.id_token && tamper !== 'off') {
    const [h, p, s] = ctx.body.id_token.split('.');
    const payload = JSON.parse(Buffer.from(p, 'base64url'));
    if (tamper === 'payload') {
      payload.groups = ['support-team', 'privacy-team', 'admins'];
      payload.sub = 'mallory';
      ctx.body = { ...ctx.body, id_token: `${h}.${b64(payload)}.${s}` };
    } else if (tamper === 'none') {
      ctx.body = { ...ctx.body, id_token: `${b64({ alg: 'none', typ: 'JWT' })}.${p}.` };
    }
  }
});

server.on('request', provider.callback());
console.log(`issuer: ${issuer}`);
