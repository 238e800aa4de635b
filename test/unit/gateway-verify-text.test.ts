/**
 * The DETAIL of the gateway's refusal of a client certificate is OpenSSL's verify text, as PostgreSQL logs it —
 * not Node's message, which from Node 24 carries advice for Node users (issue 13: the suite on Node 26).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { opensslVerifyText } from '../../src/gateway/transport-node.js';

test("Node 24+'s advice after OpenSSL's verify text is dropped; OpenSSL's own text is kept whole", () => {
  assert.equal(
    opensslVerifyText(
      'unable to verify the first certificate; if the root CA is installed locally, try running Node.js with --use-system-ca',
    ),
    'unable to verify the first certificate',
  );
  for (const text of [
    'unable to get local issuer certificate',
    'certificate revoked',
    "format error in certificate's notAfter field",
  ]) {
    assert.equal(opensslVerifyText(text), text);
  }
});
