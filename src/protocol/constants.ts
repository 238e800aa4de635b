/**
 * Wire constants of the PostgreSQL frontend/backend protocol.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html
 */

/** Request codes sent in place of a protocol version in the first packet of a connection. */
export const RequestCode = {
  /** SSLRequest: 1234 << 16 | 5679 */
  SSLRequest: 80877103,
  /** GSSENCRequest: 1234 << 16 | 5680 */
  GSSENCRequest: 80877104,
  /** CancelRequest: 1234 << 16 | 5678 */
  CancelRequest: 80877102,
} as const;

/** Protocol versions as the int32 a StartupMessage carries (major << 16 | minor). */
export const ProtocolVersion = {
  V3_0: 3 << 16,
  /** Protocol 3.2 (PostgreSQL 18): variable-length cancel keys. */
  V3_2: (3 << 16) | 2,
} as const;

/** The newest protocol PostgreSQL 18 speaks; used only for the "unsupported frontend protocol" message. */
export const LATEST_PROTOCOL = { major: 3, minor: 2 } as const;

/**
 * PostgreSQL's MAX_STARTUP_PACKET_LENGTH (src/include/libpq/pqcomm.h): a StartupMessage longer than this is refused
 * before it is read, so a client cannot make the server buffer an arbitrary amount of data.
 */
export const MAX_STARTUP_PACKET_LENGTH = 10000;

/** Longest cancel key protocol 3.2 allows (PostgreSQL 18, protocol.sgml: "up to 256 bytes"). */
export const MAX_CANCEL_KEY_LENGTH = 256;

/** First byte of a TLS record carrying a handshake: a direct-TLS ClientHello starts with it (PostgreSQL 17+). */
export const TLS_HANDSHAKE_RECORD = 0x16;

/** ALPN protocol identifier PostgreSQL registered for direct TLS (IANA "postgresql"). */
export const ALPN_POSTGRESQL = 'postgresql';

/** Backend message type bytes the gateway looks at while authentication is in progress. */
export const BackendMessage = {
  /** 'R' AuthenticationRequest (all variants) */
  Authentication: 0x52,
  /** 'K' BackendKeyData */
  BackendKeyData: 0x4b,
  /** 'Z' ReadyForQuery */
  ReadyForQuery: 0x5a,
  /** 'E' ErrorResponse */
  ErrorResponse: 0x45,
  /** 'N' NoticeResponse */
  NoticeResponse: 0x4e,
  /** 'S' ParameterStatus */
  ParameterStatus: 0x53,
  /** 'v' NegotiateProtocolVersion */
  NegotiateProtocolVersion: 0x76,
} as const;

/** Single-byte answers to SSLRequest / GSSENCRequest. */
export const SSL_ACCEPT = Buffer.from('S');
export const SSL_REFUSE = Buffer.from('N');

/** ErrorResponse / NoticeResponse field codes. https://www.postgresql.org/docs/current/protocol-error-fields.html */
export const ErrorField = {
  Severity: 'S',
  SeverityNonLocalized: 'V',
  Code: 'C',
  Message: 'M',
  Detail: 'D',
  Hint: 'H',
  Position: 'P',
  InternalPosition: 'p',
  InternalQuery: 'q',
  Where: 'W',
  Schema: 's',
  Table: 't',
  Column: 'c',
  DataType: 'd',
  Constraint: 'n',
  File: 'F',
  Line: 'L',
  Routine: 'R',
} as const;

/** SQLSTATEs the gateway sends (https://www.postgresql.org/docs/current/errcodes-appendix.html). */
export const SqlState = {
  ProtocolViolation: '08P01',
  ConnectionFailure: '08006',
  SqlclientUnableToEstablishSqlconnection: '08001',
  FeatureNotSupported: '0A000',
  InvalidAuthorizationSpecification: '28000',
  InvalidPassword: '28P01',
  ConfigFileError: 'F0000',
  CannotConnectNow: '57P03',
  AdminShutdown: '57P01',
  TooManyConnections: '53300',
  InternalError: 'XX000',
} as const;
