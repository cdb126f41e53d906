// A real OpenID provider for tests-integration/test_remote_mcp_oidc.py: npm `oidc-provider` on loopback,
// issuing RS256 JWT access tokens for one resource through the client-credentials grant.
//
// Environment: RESOURCE (the MCP resource URL), CLIENT_ID, CLIENT_SECRET, SCOPES (space-separated).
// Prints the issuer URL as the first stdout line once it listens on 127.0.0.1 (a free port).
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const { RESOURCE, CLIENT_ID, CLIENT_SECRET, SCOPES } = process.env;
const key = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
const server = http.createServer();

server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        scope: SCOPES,
      },
    ],
    scopes: SCOPES.split(' '),
    jwks: { keys: [{ ...key, kid: 'oidc-provider-key', use: 'sig', alg: 'RS256' }] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => {
          if (resourceIndicator !== RESOURCE) throw new Error('unknown resource');
          return { scope: SCOPES, audience: RESOURCE, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
        },
      },
    },
  });
  server.on('request', provider.callback());
  process.stdout.write(`${issuer}\n`);
});
process.stdin.on('end', () => process.exit(0)); // the test closes stdin to stop us
process.stdin.resume();
