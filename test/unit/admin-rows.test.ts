/** The simple-query answer codec (src/protocol/rows.ts): byte fixtures and the Query decoder's refusals. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isPgtlsError } from '../../src/errors.js';
import {
  ERR_QUERY_MESSAGE,
  decodeQuery,
  encodeAuthenticationOk,
  encodeBackendKeyData,
  encodeCommandComplete,
  encodeDataRow,
  encodeEmptyQueryResponse,
  encodeNotice,
  encodeParameterStatus,
  encodeQuery,
  encodeQueryError,
  encodeReadyForQuery,
  encodeResultSet,
  encodeRowDescription,
} from '../../src/protocol/rows.js';
import { decodeBackend } from '../support/operator-decode.js';

test('RowDescription: name, table OID 0, attnum 0, type OID, typlen, typmod -1, text format', () => {
  const b = encodeRowDescription([
    { name: 'id', type: 'int4' },
    { name: 'v', type: 'text' },
  ]);
  assert.deepEqual(
    [...b],
    [
      0x54,
      0,
      0,
      0,
      2 + 4 + 3 + 18 + 2 + 18,
      0,
      2,
      0x69,
      0x64,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      23,
      0,
      4,
      0xff,
      0xff,
      0xff,
      0xff,
      0,
      0,
      0x76,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      25,
      0xff,
      0xff,
      0xff,
      0xff,
      0xff,
      0xff,
      0,
      0,
    ],
  );
});

test('DataRow: lengths, NULL as -1, UTF-8 bytes counted as bytes', () => {
  const b = encodeDataRow(['é', null, '']);
  assert.deepEqual(
    [...b],
    [0x44, 0, 0, 0, 4 + 2 + 4 + 2 + 4 + 4, 0, 3, 0, 0, 0, 2, 0xc3, 0xa9, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
  );
});

test('CommandComplete, EmptyQueryResponse, ReadyForQuery, ParameterStatus, AuthenticationOk, BackendKeyData', () => {
  assert.deepEqual([...encodeCommandComplete('SHOW')], [0x43, 0, 0, 0, 9, 0x53, 0x48, 0x4f, 0x57, 0]);
  assert.deepEqual([...encodeEmptyQueryResponse()], [0x49, 0, 0, 0, 4]);
  assert.deepEqual([...encodeReadyForQuery()], [0x5a, 0, 0, 0, 5, 0x49]);
  assert.deepEqual([...encodeReadyForQuery('E')], [0x5a, 0, 0, 0, 5, 0x45]);
  assert.deepEqual([...encodeParameterStatus('a', 'b')], [0x53, 0, 0, 0, 8, 0x61, 0, 0x62, 0]);
  assert.deepEqual([...encodeAuthenticationOk()], [0x52, 0, 0, 0, 8, 0, 0, 0, 0]);
  assert.deepEqual(
    [...encodeBackendKeyData(7, Buffer.from([1, 2, 3, 4]))],
    [0x4b, 0, 0, 0, 12, 0, 0, 0, 7, 1, 2, 3, 4],
  );
});

test('an ERROR with a hint and a NOTICE with a detail decode field by field', () => {
  const [e] = decodeBackend(encodeQueryError('42601', 'bad', 'try this'));
  assert.deepEqual(e, { type: 'E', fields: { S: 'ERROR', V: 'ERROR', C: '42601', M: 'bad', H: 'try this' } });
  const [n] = decodeBackend(encodeNotice('Console usage', 'x'));
  assert.deepEqual(n, { type: 'N', fields: { S: 'NOTICE', V: 'NOTICE', C: '00000', M: 'Console usage', D: 'x' } });
});

test('a result set is RowDescription, DataRows, CommandComplete; a row of the wrong width is refused', () => {
  const msgs = decodeBackend(encodeResultSet([{ name: 'a', type: 'text' }], [['1'], [null]], 'SHOW'));
  assert.deepEqual(
    msgs.map((m) => m.type),
    ['T', 'D', 'D', 'C'],
  );
  assert.throws(
    () => encodeResultSet([{ name: 'a', type: 'text' }], [['1', '2']], 'SHOW'),
    (e: unknown) => isPgtlsError(e, ERR_QUERY_MESSAGE) && e.message === 'a row has 2 cells for 1 columns',
  );
});

test('Query: the text up to its one NUL; a missing or early NUL and invalid UTF-8 are refused', () => {
  const q = encodeQuery('SHOW CLIENTS');
  assert.equal(decodeQuery(q.subarray(5)), 'SHOW CLIENTS');
  assert.equal(decodeQuery(Buffer.from([0])), '');
  for (const bad of [Buffer.from('abc'), Buffer.from('a\0b\0'), Buffer.alloc(0)]) {
    assert.throws(
      () => decodeQuery(bad),
      (e: unknown) => isPgtlsError(e, ERR_QUERY_MESSAGE) && e.message === 'invalid message format',
    );
  }
  assert.throws(
    () => decodeQuery(Buffer.from([0xc3, 0x28, 0])),
    (e: unknown) => isPgtlsError(e, ERR_QUERY_MESSAGE) && e.message === 'invalid byte sequence for encoding "UTF8"',
  );
});
