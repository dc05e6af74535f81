// Mints a signed token (JWT) with Node's own crypto, independently of the Rust crate spout checks tokens with.
//
// Usage: node loadtest/mint_token.mjs ALG KEY CLAIMS_JSON
//   ALG: HS256 (KEY: a file holding the secret), RS256 or ES256 (KEY: a PEM private key file)
// Prints the token on stdout.
import { createHmac, createPrivateKey, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';

const [alg, keyFile, claims] = process.argv.slice(2);
if (!alg || !keyFile || !claims) {
  process.stderr.write('usage: node mint_token.mjs HS256|RS256|ES256 KEY_FILE CLAIMS_JSON\n');
  process.exit(2);
}
const b64 = (bytes) => Buffer.from(bytes).toString('base64url');
const input = `${b64(JSON.stringify({ alg, typ: 'JWT' }))}.${b64(JSON.stringify(JSON.parse(claims)))}`;
let signature;
switch (alg) {
  case 'HS256':
    signature = createHmac('sha256', readFileSync(keyFile, 'utf8').trim()).update(input).digest();
    break;
  case 'RS256':
    signature = sign('sha256', Buffer.from(input), createPrivateKey(readFileSync(keyFile)));
    break;
  case 'ES256':
    // JWS wants the raw r || s form (RFC 7518 §3.4), not DER.
    signature = sign('sha256', Buffer.from(input), {
      key: createPrivateKey(readFileSync(keyFile)),
      dsaEncoding: 'ieee-p1363',
    });
    break;
  default:
    process.stderr.write(`unsupported algorithm ${alg}\n`);
    process.exit(2);
}
process.stdout.write(`${input}.${b64(signature)}\n`);
