/** PROXY protocol v1/v2: byte fixtures written from the specification, every split offset, property tests. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { isTrustedPeer, parseTrustedList } from '../../src/hba/proxy-trusted.js';
import { encodeProxyV1, encodeProxyV2, encodeSslTlv } from '../../src/protocol/proxy-encode.js';
import {
  PP2_CLIENT,
  PP2_SUBTYPE_SSL,
  PP2_TYPE,
  type ProxyDecode,
  type ProxyHeader,
  crc32c,
  decodeProxyHeader,
  formatV6,
  looksLikeProxyHeader,
  parseV6,
} from '../../src/protocol/proxy.js';

const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
const ascii = (s: string) => Buffer.from(s, 'latin1');

function header(r: ProxyDecode): { header: ProxyHeader; consumed: number } {
  assert.equal(r.status, 'header', JSON.stringify(r));
  return r as { status: 'header'; header: ProxyHeader; consumed: number };
}
function reason(r: ProxyDecode): string {
  assert.equal(r.status, 'invalid', JSON.stringify(r));
  return (r as { reason: string }).reason;
}

describe('PROXY v1', () => {
  test('TCP4 line from the spec, followed by payload', () => {
    const line = 'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n';
    const r = header(decodeProxyHeader(ascii(`${line}GET / HTTP/1.1\r\n`)));
    assert.equal(r.consumed, line.length);
    assert.deepEqual(r.header, {
      version: 1,
      command: 'PROXY',
      family: 'INET',
      transport: 'STREAM',
      source: { address: '192.168.0.1', port: 56324 },
      destination: { address: '192.168.0.11', port: 443 },
      tlvs: [],
    });
  });

  test('TCP6 addresses are normalised (RFC 5952)', () => {
    const r = header(decodeProxyHeader(ascii('PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::ffff:10.0.0.1 1 65535\r\n')));
    assert.equal(r.header.source?.address, '2001:db8::1');
    assert.equal(r.header.destination?.address, '::ffff:10.0.0.1');
    assert.equal(r.header.destination?.port, 65535);
  });

  test('UNKNOWN, short and long form (the rest of the line is ignored)', () => {
    for (const line of [
      'PROXY UNKNOWN\r\n',
      'PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n',
    ]) {
      assert.ok(line.length <= 107);
      const r = header(decodeProxyHeader(ascii(line)));
      assert.equal(r.consumed, line.length);
      assert.deepEqual(r.header, { version: 1, command: 'PROXY', family: 'UNSPEC', transport: 'UNSPEC', tlvs: [] });
    }
  });

  test('the longest valid line is 107 bytes; no CRLF within 107 bytes is invalid', () => {
    const longest = `PROXY UNKNOWN ${'f'.repeat(90)}\r\n`;
    assert.equal(longest.length, 106);
    header(decodeProxyHeader(ascii(longest)));
    assert.equal(
      reason(decodeProxyHeader(ascii(`PROXY UNKNOWN ${'f'.repeat(93)}`))),
      'PROXY v1 header: no CRLF within 107 bytes',
    );
    assert.equal(decodeProxyHeader(ascii(`PROXY UNKNOWN ${'f'.repeat(92)}`)).status, 'need-more');
  });

  const bad: [string, string][] = [
    ['PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n', 'PROXY v1 header: LF without CR'],
    ['PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\rX', 'PROXY v1 header: CR not followed by LF'],
    [
      'PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n',
      'PROXY v1 header: expected 6 fields separated by single spaces',
    ],
    ['PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n', 'PROXY v1 header: expected 6 fields separated by single spaces'],
    ['PROXY TCP4 192.168.0.01 192.168.0.11 1 2\r\n', 'PROXY v1 header: invalid IPv4 address'],
    ['PROXY TCP4 192.168.0.256 192.168.0.11 1 2\r\n', 'PROXY v1 header: invalid IPv4 address'],
    ['PROXY TCP4 ::1 ::1 1 2\r\n', 'PROXY v1 header: invalid IPv4 address'],
    ['PROXY TCP6 1.2.3.4 ::1 1 2\r\n', 'PROXY v1 header: invalid IPv6 address'],
    ['PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n', 'PROXY v1 header: invalid IPv6 address'],
    ['PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n', 'PROXY v1 header: invalid IPv6 address'],
    ['PROXY TCP6 1::2::3 ::1 1 2\r\n', 'PROXY v1 header: invalid IPv6 address'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n', 'PROXY v1 header: invalid port'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n', 'PROXY v1 header: invalid port'],
    ['PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n', 'PROXY v1 header: unknown protocol "UDP4"'],
    ['PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n', 'PROXY v1 header: unknown protocol "tcp4"'],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 2\x00\r\n', 'PROXY v1 header: non-ASCII byte'],
    ['PROXZ', 'not a PROXY protocol header'],
    ['GET / HTTP/1.1\r\n', 'not a PROXY protocol header'],
  ];
  for (const [line, why] of bad) {
    test(`refused: ${JSON.stringify(line)}`, () => {
      assert.equal(reason(decodeProxyHeader(ascii(line))), why);
    });
  }
});

describe('PROXY v2', () => {
  test('TCP over IPv4, built byte by byte from the spec', () => {
    const b = Buffer.from([
      ...SIG,
      0x21, // version 2, PROXY
      0x11, // AF_INET, STREAM
      0x00,
      0x0c, // 12 address bytes
      10,
      1,
      2,
      3, // source
      192,
      168,
      0,
      1, // destination
      0xdb,
      0xc4, // 56260
      0x19,
      0x28, // 6440
      0x51, // payload: 'Q'
    ]);
    const r = header(decodeProxyHeader(b));
    assert.equal(r.consumed, 28);
    assert.deepEqual(r.header, {
      version: 2,
      command: 'PROXY',
      family: 'INET',
      transport: 'STREAM',
      source: { address: '10.1.2.3', port: 56260 },
      destination: { address: '192.168.0.1', port: 6440 },
      tlvs: [],
    });
  });

  test('TCP over IPv6 with AUTHORITY and SSL TLVs', () => {
    const src = [0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 0x01];
    const dst = [...Array(15).fill(0), 0x01];
    const authority = [PP2_TYPE.AUTHORITY, 0, 7, ...ascii('db.test')];
    const sslSub = [PP2_SUBTYPE_SSL.VERSION, 0, 7, ...ascii('TLSv1.3'), PP2_SUBTYPE_SSL.CN, 0, 5, ...ascii('alice')];
    const ssl = [PP2_TYPE.SSL, 0, 5 + sslSub.length, PP2_CLIENT.SSL | PP2_CLIENT.CERT_CONN, 0, 0, 0, 0, ...sslSub];
    const body = [...src, ...dst, 0x04, 0xd2, 0x19, 0x28, ...authority, ...ssl];
    const b = Buffer.from([...SIG, 0x21, 0x21, body.length >> 8, body.length & 0xff, ...body]);
    const r = header(decodeProxyHeader(b));
    assert.equal(r.consumed, b.length);
    assert.deepEqual(r.header.source, { address: '2001:db8::1', port: 1234 });
    assert.deepEqual(r.header.destination, { address: '::1', port: 6440 });
    assert.equal(r.header.authority, 'db.test');
    assert.equal(r.header.ssl?.client, 3);
    assert.equal(r.header.ssl?.verify, 0);
    assert.equal(r.header.ssl?.version, 'TLSv1.3');
    assert.equal(r.header.ssl?.cn, 'alice');
    assert.deepEqual(
      r.header.tlvs.map((t) => t.type),
      [PP2_TYPE.AUTHORITY, PP2_TYPE.SSL],
    );
  });

  test('LOCAL: the address block is skipped whatever it holds', () => {
    const b = Buffer.from([...SIG, 0x20, 0x11, 0x00, 0x03, 0xaa, 0xbb, 0xcc]);
    const r = header(decodeProxyHeader(b));
    assert.equal(r.consumed, 19);
    assert.deepEqual(r.header, { version: 2, command: 'LOCAL', family: 'INET', transport: 'STREAM', tlvs: [] });
  });

  test('AF_UNIX: 108-byte NUL-padded paths', () => {
    const enc = encodeProxyV2({
      command: 'PROXY',
      family: 'UNIX',
      transport: 'STREAM',
      source: { address: '/run/client.sock', port: 0 },
      destination: { address: '@abstract', port: 0 },
    });
    assert.equal(enc.length, 16 + 216);
    const r = header(decodeProxyHeader(enc));
    assert.equal(r.header.source?.address, '/run/client.sock');
    assert.equal(r.header.destination?.address, '@abstract');
  });

  test('CRC32C: the RFC 3720 check value, a correct header passes, a flipped bit fails', () => {
    assert.equal(crc32c(ascii('123456789')), 0xe3069283);
    const enc = encodeProxyV2({
      command: 'PROXY',
      family: 'INET',
      transport: 'STREAM',
      source: { address: '1.2.3.4', port: 5 },
      destination: { address: '6.7.8.9', port: 10 },
      crc32c: true,
    });
    header(decodeProxyHeader(enc));
    const broken = Buffer.from(enc);
    broken[17] = (broken[17] ?? 0) ^ 1;
    assert.equal(reason(decodeProxyHeader(broken)), 'PROXY v2 header: CRC32C mismatch');
  });

  const fixed = (verCmd: number, fam: number, len: number, rest: number[] = []) =>
    Buffer.from([...SIG, verCmd, fam, len >> 8, len & 0xff, ...rest]);
  const bad: [string, Buffer, string][] = [
    ['version 1 in the binary form', fixed(0x11, 0x11, 0), 'PROXY v2 header: unsupported version 1'],
    ['command 2', fixed(0x22, 0x11, 0), 'PROXY v2 header: unknown command 2'],
    ['family 4', fixed(0x21, 0x41, 0), 'PROXY v2 header: invalid family/transport byte 0x41'],
    ['transport 3', fixed(0x21, 0x13, 0), 'PROXY v2 header: invalid family/transport byte 0x13'],
    [
      'address block too short',
      fixed(0x21, 0x11, 4, [1, 2, 3, 4]),
      'PROXY v2 header: address block of 4 bytes is too short for INET',
    ],
    ['truncated TLV', fixed(0x21, 0x11, 14, [...Array(12).fill(0), 0x02, 0x00]), 'PROXY v2 header: truncated TLV'],
    [
      'TLV longer than the header',
      fixed(0x21, 0x11, 15, [...Array(12).fill(0), 0x02, 0x00, 0x09]),
      'PROXY v2 header: TLV 0x02 runs past the header',
    ],
    [
      'SSL TLV shorter than 5 bytes',
      fixed(0x21, 0x11, 16, [...Array(12).fill(0), 0x20, 0x00, 0x01, 0x01]),
      'PROXY v2 header: malformed PP2_TYPE_SSL TLV',
    ],
    ['length over the limit', fixed(0x21, 0x11, 4097), 'PROXY v2 header: length 4097 exceeds the limit of 4096'],
    ['broken signature', Buffer.from([0x0d, 0x0a, 0x0d, 0x0b]), 'not a PROXY protocol header'],
  ];
  for (const [name, bytes, why] of bad) {
    test(`refused: ${name}`, () => {
      assert.equal(reason(decodeProxyHeader(bytes)), why);
    });
  }

  test('the length limit is configurable', () => {
    const enc = encodeProxyV2({
      command: 'PROXY',
      family: 'INET',
      transport: 'STREAM',
      source: { address: '1.2.3.4', port: 5 },
      destination: { address: '6.7.8.9', port: 10 },
      tlvs: [{ type: PP2_TYPE.NOOP, value: Buffer.alloc(100) }],
    });
    assert.equal(
      reason(decodeProxyHeader(enc, { maxV2Length: 64 })),
      'PROXY v2 header: length 115 exceeds the limit of 64',
    );
    header(decodeProxyHeader(enc, { maxV2Length: 115 }));
  });
});

describe('detection', () => {
  test('looksLikeProxyHeader judges by the bytes present', () => {
    assert.equal(looksLikeProxyHeader(ascii('PRO')), true);
    assert.equal(looksLikeProxyHeader(Buffer.from(SIG.slice(0, 5))), true);
    assert.equal(looksLikeProxyHeader(Buffer.from([0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f])), false); // SSLRequest
    assert.equal(looksLikeProxyHeader(Buffer.from([0x16, 3, 1])), false); // TLS ClientHello
    assert.equal(looksLikeProxyHeader(Buffer.alloc(0)), false);
  });
  test('an SSLRequest or a TLS record is not a PROXY header', () => {
    assert.equal(
      reason(decodeProxyHeader(Buffer.from([0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]))),
      'not a PROXY protocol header',
    );
    assert.equal(reason(decodeProxyHeader(Buffer.from([0x16, 3, 1, 0, 5]))), 'not a PROXY protocol header');
  });
});

describe('IPv6 text', () => {
  test('parse and RFC 5952 format', () => {
    const cases: [string, string][] = [
      ['::', '::'],
      ['::1', '::1'],
      ['1::', '1::'],
      ['2001:0db8:0000:0000:0001:0000:0000:0001', '2001:db8::1:0:0:1'],
      ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
      ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
      ['::ffff:192.0.2.1', '::ffff:192.0.2.1'],
      ['::ffff:c000:201', '::ffff:192.0.2.1'],
    ];
    for (const [input, out] of cases) assert.equal(formatV6(parseV6(input)!), out, input);
    for (const badText of ['', ':', '1:2', '::1::', '12345::', 'g::1', '1.2.3.4::', '::1.2.3']) {
      assert.equal(parseV6(badText), undefined, badText);
    }
  });
});

// ----------------------------------------------------------------------------------------------- properties
const port = fc.integer({ min: 0, max: 65535 });
const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join('.'));
const v6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => formatV6(b));
const endpoint4 = fc.record({ address: v4, port });
const endpoint6 = fc.record({ address: v6, port });
const tlv = fc.record({
  // CRC32C gets its own test; SSL must be well-formed to decode.
  type: fc.integer({ min: 0, max: 255 }).filter((t) => t !== PP2_TYPE.CRC32C && t !== PP2_TYPE.SSL),
  value: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
});

const v1Header = fc.oneof(
  fc.record({ family: fc.constant('INET' as const), source: endpoint4, destination: endpoint4 }),
  fc.record({ family: fc.constant('INET6' as const), source: endpoint6, destination: endpoint6 }),
  fc.constant({ family: 'UNSPEC' as const }),
);
const v2Header = fc.oneof(
  fc.record({
    command: fc.constant('PROXY' as const),
    family: fc.constant('INET' as const),
    transport: fc.constantFrom('STREAM' as const, 'DGRAM' as const),
    source: endpoint4,
    destination: endpoint4,
    tlvs: fc.array(tlv, { maxLength: 4 }),
    crc32c: fc.boolean(),
  }),
  fc.record({
    command: fc.constant('PROXY' as const),
    family: fc.constant('INET6' as const),
    transport: fc.constantFrom('STREAM' as const, 'DGRAM' as const),
    source: endpoint6,
    destination: endpoint6,
    tlvs: fc.array(tlv, { maxLength: 4 }),
    crc32c: fc.boolean(),
  }),
  fc.record({
    command: fc.constant('LOCAL' as const),
    family: fc.constant('UNSPEC' as const),
    transport: fc.constant('UNSPEC' as const),
  }),
);

/** Every proper prefix is need-more; the whole decodes to `expect` whatever follows. */
function assertSplits(bytes: Buffer, check: (h: ProxyHeader) => void): void {
  for (let i = 0; i < bytes.length; i++) {
    assert.equal(decodeProxyHeader(bytes.subarray(0, i)).status, 'need-more', `prefix ${i} of ${bytes.length}`);
  }
  const r = header(decodeProxyHeader(Buffer.concat([bytes, Buffer.from('trailing payload')])));
  assert.equal(r.consumed, bytes.length);
  check(r.header);
}

describe('properties', () => {
  test('v1: encode → decode round trip, split at every offset', () => {
    fc.assert(
      fc.property(v1Header, (h) => {
        assertSplits(encodeProxyV1(h), (d) => {
          assert.equal(d.family, h.family);
          if (h.family !== 'UNSPEC') {
            assert.deepEqual(d.source, { ...h.source });
            assert.deepEqual(d.destination, { ...h.destination });
          }
        });
      }),
      { numRuns: 300 },
    );
  });

  test('v2: encode → decode round trip, split at every offset', () => {
    fc.assert(
      fc.property(v2Header, (h) => {
        assertSplits(encodeProxyV2(h), (d) => {
          assert.equal(d.command, h.command);
          assert.equal(d.family, h.family);
          assert.equal(d.transport, h.transport);
          if (h.command === 'PROXY') {
            assert.deepEqual(d.source, { ...h.source });
            assert.deepEqual(d.destination, { ...h.destination });
            const sent = [...h.tlvs];
            const got = d.tlvs.filter((t) => t.type !== PP2_TYPE.CRC32C);
            assert.deepEqual(
              got.map((t) => [t.type, [...t.value]]),
              sent.map((t) => [t.type, [...t.value]]),
            );
          }
        });
      }),
      { numRuns: 300 },
    );
  });

  test('an SSL TLV round-trips', () => {
    fc.assert(
      fc.property(fc.nat(7), fc.nat(), fc.string({ maxLength: 20 }), (client, verify, cn) => {
        const enc = encodeProxyV2({
          command: 'PROXY',
          family: 'INET',
          transport: 'STREAM',
          source: { address: '1.2.3.4', port: 1 },
          destination: { address: '5.6.7.8', port: 2 },
          tlvs: [encodeSslTlv(client, verify, [{ type: PP2_SUBTYPE_SSL.CN, value: Buffer.from(cn, 'utf8') }])],
        });
        const d = header(decodeProxyHeader(enc)).header;
        assert.equal(d.ssl?.client, client);
        assert.equal(d.ssl?.verify, verify);
        assert.equal(d.ssl?.cn, cn);
      }),
      { numRuns: 100 },
    );
  });

  test('random bytes never throw, and a header result never claims more than it was given', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          // Bytes behind a valid start, to get past the signature checks.
          fc
            .uint8Array({ maxLength: 300 })
            .map((a) => Uint8Array.from([...SIG, ...a])),
          fc.uint8Array({ maxLength: 120 }).map((a) => Uint8Array.from([...ascii('PROXY '), ...a])),
        ),
        (bytes) => {
          const r = decodeProxyHeader(bytes);
          if (r.status === 'header') assert.ok(r.consumed <= bytes.length);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('proxy_protocol_trusted', () => {
  test('parse: addresses, CIDR ranges, commas and blanks', () => {
    const r = parseTrustedList('10.0.0.0/8, 192.168.1.10 fd00::/8,::1');
    assert.ok(r.ok);
    assert.deepEqual(
      r.ranges.map((x) => [x.family, x.bits, x.text]),
      [
        [4, 8, '10.0.0.0/8'],
        [4, 32, '192.168.1.10'],
        [6, 8, 'fd00::/8'],
        [6, 128, '::1'],
      ],
    );
    assert.deepEqual(parseTrustedList(''), { ok: true, ranges: [] });
  });
  test('parse: refuses host names, bad masks and zone indexes', () => {
    for (const e of ['lb.internal', '10.0.0.0/33', '::1/129', '10.0.0.0/', 'fe80::1%eth0', '10.0.0.0/8x']) {
      assert.deepEqual(parseTrustedList(`127.0.0.1, ${e}`), { ok: false, entry: e });
    }
  });
  test('match: IPv4, IPv6, and IPv4-mapped IPv6 on either side', () => {
    const r = parseTrustedList('10.0.0.0/8, 2001:db8::/32, ::ffff:192.168.0.0/112, 127.0.0.1');
    assert.ok(r.ok);
    const yes = ['10.1.2.3', '::ffff:10.255.0.1', '2001:db8:1::5', '192.168.7.7', '::ffff:192.168.0.1', '127.0.0.1'];
    const no = ['11.0.0.1', '2001:db9::1', '192.169.0.1', '127.0.0.2', '::1', '::a00:1', undefined, 'not-an-ip'];
    for (const a of yes) assert.equal(isTrustedPeer(r.ranges, a), true, a);
    for (const a of no) assert.equal(isTrustedPeer(r.ranges, a), false, String(a));
  });
  test('an empty list trusts nobody', () => {
    assert.equal(isTrustedPeer([], '127.0.0.1'), false);
  });
});
