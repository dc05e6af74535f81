// Tokens and a JWKS minted by `jose` (an implementation independent of spout's `jsonwebtoken`), for tests/auth.rs.
//
// Usage: node jose_mint.mjs JOB_JSON
//   JOB_JSON: {"jwks": [{"kid", "alg", "public": PEM_PATH}],
//              "tokens": [{"alg", "kid"?, "claims", "secret"? | "pem"? (PKCS#8 path) | "bytes"? (any file's bytes)}]}
// Prints {"jwks": {"keys": [...]}, "tokens": [...]} on one line, tokens in job order. An `alg` of "none" makes an
// unsecured JWT (RFC 7519 §6), which spout must refuse.
import { readFileSync } from 'node:fs';
import { SignJWT, UnsecuredJWT, importPKCS8, importSPKI, exportJWK } from 'jose';

const job = JSON.parse(process.argv[2] ?? '{}');

async function signingKey(spec) {
  if (spec.secret !== undefined) return new TextEncoder().encode(spec.secret);
  if (spec.bytes !== undefined) return new Uint8Array(readFileSync(spec.bytes));
  return importPKCS8(readFileSync(spec.pem, 'utf8'), spec.alg);
}

async function token(spec) {
  if (spec.alg === 'none') return new UnsecuredJWT(spec.claims).encode();
  const header = { alg: spec.alg, typ: 'JWT' };
  if (spec.kid) header.kid = spec.kid;
  return new SignJWT(spec.claims).setProtectedHeader(header).sign(await signingKey(spec));
}

async function jwk(spec) {
  const key = await importSPKI(readFileSync(spec.public, 'utf8'), spec.alg, { extractable: true });
  return { ...(await exportJWK(key)), kid: spec.kid, alg: spec.alg, use: 'sig' };
}

const keys = await Promise.all((job.jwks ?? []).map(jwk));
const tokens = [];
for (const spec of job.tokens ?? []) tokens.push(await token(spec));
process.stdout.write(JSON.stringify({ jwks: { keys }, tokens }) + '\n');
