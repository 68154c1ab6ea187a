// A real, certified OpenID Provider (oidc-provider) on loopback for Candor's staff sign-in
// tests, and of `scripts/quickstart-idp.sh`. Usage: node op.mjs <client_secret> [--demo]
// (--demo: without the /__test/ routes below). Prints `issuer: <url>` once it listens. Its own development login form accepts any password; the accounts below decide the
// `groups` claim. `/__test/tamper?mode=payload|none|off` makes the token endpoint's ID tokens
// arrive altered (a changed claim under the provider's signature, or `alg: none` unsigned), as
// an attacker on the path would send them.
//
// Machine identities: client `backend-service` (same secret) gets JWT access tokens by the
// client credentials grant with a resource indicator; `https://candor.test/api` is Candor's
// API, `https://other.test/api` another service's. Its `roles` claim is `vault-writer`.
// `/__test/forge?kind=issuer|key|none` returns an access token for Candor's API that the
// provider did not issue: signed with its own key but naming another issuer, signed with
// another key under the provider's key id, or unsigned (`alg: none`); `kind=rotated` signs with
// the provider's next key (`op-key-2`), which its JWKS publishes once `/__test/rotate` is called.
//
// Multi-factor: a login answering an authorization request that asks for `acr_values`
// urn:candor:test:mfa is the step-up (as a real provider would ask for a second factor): the
// session gets amr [pwd, otp, mfa] and that acr; any other login gets amr [pwd] and acr
// urn:candor:test:pwd.
import { createServer } from 'node:http';
import * as jose from 'jose';
import Provider from 'oidc-provider';

const [clientSecret] = process.argv.slice(2);
// `--demo` (scripts/quickstart-idp.sh): the same provider without its /__test/ routes.
const demo = process.argv.includes('--demo');
const ACCOUNTS = {
  alice: { groups: ['support-team'], email: 'alice.agent@staff.example' },
  bob: { groups: ['sales'], email: 'bob@staff.example' },
  carol: { groups: ['support-team', 'privacy-team'], email: 'carol@staff.example' },
  dora: { groups: 'privacy-team', email: 'dora@staff.example' },
  erin: { groups: ['it-admins'], email: 'erin@staff.example' },
};

const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

// The provider's signing key, kept here so /__test/forge can sign with it too.
const signingKey = async (kid) => {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  return { ...(await jose.exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
};
const providerKey = await signingKey('op-key-1');
const otherKey = await signingKey('op-key-1');
const nextKey = await signingKey('op-key-2');
const publicOf = ({ d, p, q, dp, dq, qi, ...pub }) => pub;
let rotated = false;
const CANDOR_API = 'https://candor.test/api';
const MFA_ACR = 'urn:candor:test:mfa';
const PWD_ACR = 'urn:candor:test:pwd';

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
  }, {
    client_id: 'backend-service',
    client_secret: clientSecret,
    redirect_uris: [],
    response_types: [],
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [providerKey] },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => CANDOR_API,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => ({
        scope: 'vault',
        audience: resource,
        accessTokenTTL: 300,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  async extraTokenClaims(ctx, token) {
    if (token.kind === 'ClientCredentials') return { roles: ['vault-writer'] };
    return undefined;
  },
  acrValues: [PWD_ACR, MFA_ACR],
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'groups'],
  claims: { openid: ['sub'], email: ['email'], groups: ['groups'] },
  conformIdTokenClaims: false,
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
  if (demo && ctx.path.startsWith('/__test/')) {
    ctx.status = 404;
    return;
  }
  if (ctx.path === '/__test/tamper') {
    tamper = ctx.query.mode;
    ctx.body = { tamper };
    return;
  }
  if (ctx.method === 'POST' && ctx.path.startsWith('/interaction/')) {
    const raw = await new Promise((resolve, reject) => {
      let data = '';
      ctx.req.on('data', (c) => { data += c; });
      ctx.req.on('end', () => resolve(data));
      ctx.req.on('error', reject);
    });
    const form = new URLSearchParams(raw);
    if (form.get('prompt') === 'login') {
      const details = await provider.interactionDetails(ctx.req, ctx.res);
      const stepUp = String(details.params.acr_values || '').split(' ').includes(MFA_ACR);
      const login = stepUp
        ? { accountId: form.get('login'), amr: ['pwd', 'otp', 'mfa'], acr: MFA_ACR }
        : { accountId: form.get('login'), amr: ['pwd'], acr: PWD_ACR };
      await provider.interactionFinished(ctx.req, ctx.res, { login }, { mergeWithLastSubmission: false });
      ctx.respond = false;
      return;
    }
    ctx.req.body = raw;
  }
  if (ctx.path === '/__test/rotate') {
    rotated = true;
    ctx.body = { rotated };
    return;
  }
  if (ctx.path === '/__test/forge') {
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      iss: ctx.query.kind === 'issuer' ? 'http://127.0.0.1:1/elsewhere' : issuer,
      sub: 'backend-service', client_id: 'backend-service', aud: CANDOR_API,
      roles: ['vault-writer'], iat: now, exp: now + 300, jti: `forged-${now}`,
    };
    if (ctx.query.kind === 'none') {
      ctx.body = { token: `${b64({ alg: 'none', typ: 'at+jwt' })}.${b64(claims)}.` };
    } else {
      const jwk = { key: otherKey, rotated: nextKey }[ctx.query.kind] ?? providerKey;
      const key = await jose.importJWK(jwk, 'RS256');
      const token = await new jose.SignJWT(claims).setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: jwk.kid }).sign(key);
      ctx.body = { token };
    }
    return;
  }
  await next();
  if (ctx.path === '/jwks' && rotated && ctx.body && Array.isArray(ctx.body.keys)) {
    ctx.body = { keys: [...ctx.body.keys, publicOf(nextKey)] };
  }
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
