/**
 * The one place @peculiar/x509 is set up. Since 2.x it resolves its algorithm providers through tsyringe, which
 * throws at import time unless a Reflect metadata polyfill was loaded first ("tsyringe requires a reflect
 * polyfill"); and it must be told to use Node's WebCrypto. pki/ modules import `x509` from here so that the order
 * of the two side effects can never be broken by an import sorter.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };
