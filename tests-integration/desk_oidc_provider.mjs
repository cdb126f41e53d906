// A real OpenID provider for tests-integration/test_approval_desk.py: npm `oidc-provider` on loopback with
// the authorization-code flow (PKCE required) for one confidential client, the approval desk.
//
// Its sign-in page is ours (no outside resources): any login name signs in as that subject, which is how
// the tests log in as an approver, a non-approver or an agent's own subject.
//
// Environment: CLIENT_ID, CLIENT_SECRET, REDIRECT_URI. Prints the issuer URL as the first stdout line.
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const { CLIENT_ID, CLIENT_SECRET, REDIRECT_URI } = process.env;
const key = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
const server = http.createServer();

function page(res, body) {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html><head><title>Test identity provider</title></head><body
    style="font-family:sans-serif;max-width:380px;margin:60px auto">${body}</body></html>`);
}

async function readForm(req) {
  let raw = '';
  for await (const chunk of req) raw += chunk;
  return new URLSearchParams(raw);
}

server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: [REDIRECT_URI],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [{ ...key, kid: 'desk-test-key', use: 'sig', alg: 'RS256' }] },
    claims: { openid: ['sub'], profile: ['name'] },
    scopes: ['openid', 'profile'],
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id, name: id }) }),
  });

  server.on('request', async (req, res) => {
    const match = /^\/interaction\/([^/?]+)/.exec(req.url);
    if (!match) return provider.callback()(req, res);
    try {
      const details = await provider.interactionDetails(req, res);
      if (details.prompt.name === 'login' && req.method === 'GET') {
        return page(res, `<h1>Sign in</h1><form method="post" action="/interaction/${details.uid}">
          <p><label>Login <input id="login" name="login" autofocus required></label></p>
          <p><button id="sign-in" type="submit">Sign in</button></p></form>`);
      }
      if (details.prompt.name === 'login') {
        const form = await readForm(req);
        return provider.interactionFinished(req, res, { login: { accountId: form.get('login') } });
      }
      const grant = new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      grant.addOIDCScope('openid profile');
      const grantId = await grant.save();
      return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    } catch (err) {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(`interaction failed: ${err.message}`);
    }
  });
  process.stdout.write(`${issuer}\n`);
});
process.stdin.on('end', () => process.exit(0)); // the test closes stdin to stop us
process.stdin.resume();
