/**
 * The admin console (dbname=pgtls): PgBouncer's console grammar (src/admin.c: one command per Query, `WORD [WORD]`,
 * `SET key = value | 'value'`, case-insensitive, optional trailing semicolon) and its command names where PgBouncer
 * has the command (SHOW CLIENTS|SERVERS|POOLS|CONFIG|STATS|VERSION|HELP, RELOAD, SET, KILL_CLIENT), plus the gateway's
 * own tables (SHOW SSL|HBA|CERTS|WOULD_REFUSE). The answer is the bytes of one result (RowDescription, DataRows,
 * CommandComplete) or one ErrorResponse; the caller appends ReadyForQuery.
 *
 * Errors differ from PgBouncer on purpose: PgBouncer answers every console error with SQLSTATE 08P01, which drivers
 * and pools read as "the connection is broken" (class 08: JDBC pools evict the connection, node-postgres users
 * reconnect). The console keeps PgBouncer's texts but uses the SQLSTATE PostgreSQL would: 42601 for a command it does
 * not know, 42501 for a command the role may not run, 22023 for a bad value, with a hint naming what works.
 */
import { type TlsVersionName, parseValue } from '../../config/schema.js';
import {
  encodeCommandComplete,
  encodeEmptyQueryResponse,
  encodeNotice,
  encodeQueryError,
  encodeResultSet,
} from '../../protocol/rows.js';
import { killAcrossWorkers, setAcrossWorkers, showAcrossWorkers } from './console-workers.js';
import { rangeError } from './overrides.js';
import { type ConsoleRole, type OperatorView, RUNTIME_SETTINGS, type RuntimeSetting } from './runtime-view.js';
import { TABLES } from './tables.js';

/** SQLSTATEs the console sends (errcodes.txt). */
export const ConsoleSqlState = {
  SyntaxError: '42601',
  InsufficientPrivilege: '42501',
  InvalidParameterValue: '22023',
  UndefinedObject: '42704',
  ConfigFileError: 'F0000',
} as const;

const SHOW_NAMES = Object.keys(TABLES).map((n) => n.toUpperCase());
const USAGE_HINT = `Commands: SHOW ${[...SHOW_NAMES, 'HELP'].join('|')}; RELOAD; SET ${RUNTIME_SETTINGS.join('|')} = value; KILL_CLIENT <id>.`;

/** Parameters clients set on connect that the console accepts and ignores, as PgBouncer's fake_param_list. */
const FAKE_PARAMS = new Set([
  'client_encoding',
  'default_transaction_isolation',
  'standard_conforming_strings',
  'datestyle',
  'timezone',
  'extra_float_digits',
  'application_name',
]);

/** A console command after parsing. */
export type ConsoleCommand =
  | { readonly kind: 'empty' }
  | { readonly kind: 'show'; readonly what: string }
  | { readonly kind: 'reload' }
  | { readonly kind: 'kill_client'; readonly arg: string }
  | { readonly kind: 'set'; readonly key: string; readonly value: string }
  | { readonly kind: 'invalid' };

// PgBouncer's WORD: a double-quoted identifier or [0-9a-z_]+ (case-insensitive).
const WORD = String.raw`("(?:[^"]|"")+"|[0-9a-z_.]+)`;
const CMD_RX = new RegExp(String.raw`^\s*${WORD}(?:\s+${WORD})?(?:\s+${WORD})?\s*(?:;\s*)?$`, 'i');
const SET_WORD_RX = new RegExp(String.raw`^\s*set\s+${WORD}\s*(?:=|\s+to\s+)\s*${WORD}\s*(?:;\s*)?$`, 'i');
const SET_STR_RX = new RegExp(String.raw`^\s*set\s+${WORD}\s*(?:=|\s+to\s+)\s*'((?:[^']|'')*)'\s*(?:;\s*)?$`, 'i');

const unquoteWord = (w: string) => (w.startsWith('"') ? w.slice(1, -1).replace(/""/g, '"') : w.toLowerCase());

/** Pure parser: the text of one simple Query → a command. */
export function parseConsoleCommand(sql: string): ConsoleCommand {
  if (/^[\s;]*$/.test(sql)) return { kind: 'empty' };
  const setStr = SET_STR_RX.exec(sql);
  if (setStr) return { kind: 'set', key: unquoteWord(setStr[1]!), value: setStr[2]!.replace(/''/g, "'") };
  const setWord = SET_WORD_RX.exec(sql);
  if (setWord)
    return {
      kind: 'set',
      key: unquoteWord(setWord[1]!),
      value: setWord[2]!.startsWith('"') ? unquoteWord(setWord[2]!) : setWord[2]!,
    };
  const m = CMD_RX.exec(sql);
  if (!m) return { kind: 'invalid' };
  const words = [m[1], m[2], m[3]].filter((w): w is string => w !== undefined).map(unquoteWord);
  const [cmd, a1, a2] = words;
  if (cmd === 'show' && a1 !== undefined && a2 === undefined) return { kind: 'show', what: a1 };
  if (cmd === 'reload' && a1 === undefined) return { kind: 'reload' };
  // PgBouncer's KILL_CLIENT <id>, and the two-word spelling KILL CLIENT <id>.
  if (cmd === 'kill_client' && a1 !== undefined && a2 === undefined) return { kind: 'kill_client', arg: a1 };
  if (cmd === 'kill' && a1 === 'client' && a2 !== undefined) return { kind: 'kill_client', arg: a2 };
  return { kind: 'invalid' };
}

const err = (code: string, message: string, hint?: string) => encodeQueryError(code, message, hint);
const adminNeeded = () =>
  err(
    ConsoleSqlState.InsufficientPrivilege,
    'admin access needed',
    'This user is in stats_users, which may only SHOW; admin_users may also act.',
  );

/** The help text, as PgBouncer sends it: a NOTICE "Console usage" with the list in DETAIL. */
function help(): Buffer {
  const detail = [
    `\tSHOW ${[...SHOW_NAMES, 'HELP'].join('|')}`,
    `\tSET ${RUNTIME_SETTINGS.join('|')} = value`,
    '\tRELOAD',
    '\tKILL_CLIENT <id>',
  ].join('\n');
  const notice = encodeNotice('Console usage', `\n${detail}`);
  return Buffer.concat([notice, encodeCommandComplete('SHOW')]);
}

/**
 * Answer one simple Query of the admin console. Never throws for anything a client can send: every failure is an
 * ErrorResponse (ERROR, the session goes on).
 */
export async function handleConsoleQuery(
  sql: string,
  view: OperatorView,
  role: ConsoleRole,
  now: Date = new Date(),
): Promise<Buffer> {
  const cmd = parseConsoleCommand(sql);
  switch (cmd.kind) {
    case 'empty':
      return encodeEmptyQueryResponse();
    case 'invalid':
      return err(ConsoleSqlState.SyntaxError, `invalid command '${sql.trim()}', use SHOW HELP;`, USAGE_HINT);
    case 'show': {
      if (cmd.what === 'help') return help();
      const table = TABLES[cmd.what];
      if (!table) {
        return err(ConsoleSqlState.SyntaxError, `invalid command '${sql.trim()}', use SHOW HELP;`, USAGE_HINT);
      }
      if (view.cluster) {
        const gathered = await showAcrossWorkers(cmd.what, view.cluster, now);
        if (gathered) return gathered;
      }
      return encodeResultSet(table.columns, table.rows(view, now), 'SHOW');
    }
    case 'reload': {
      if (role !== 'admin') return adminNeeded();
      // With workers, every worker reloads (all-or-nothing per worker), as SIGHUP does.
      const r = view.cluster ? await view.cluster.reloadAll() : await view.reload();
      if (r.ok) return encodeCommandComplete('RELOAD');
      // PgBouncer's text and SQLSTATE (F0000); the reason is the configuration error, which holds no secret.
      return encodeQueryError(
        ConsoleSqlState.ConfigFileError,
        'RELOAD failed, see logs for additional details',
        'The configuration in force is unchanged.',
        r.error,
      );
    }
    case 'kill_client': {
      if (role !== 'admin') return adminNeeded();
      if (!/^\d+$/.test(cmd.arg)) {
        return err(
          ConsoleSqlState.InvalidParameterValue,
          'invalid client pointer supplied',
          'Give the id column of SHOW CLIENTS.',
        );
      }
      if (view.cluster) return killAcrossWorkers(Number(cmd.arg), view.cluster);
      if (!view.kill(Number(cmd.arg))) {
        return err(
          ConsoleSqlState.UndefinedObject,
          'client not found',
          'SHOW CLIENTS lists the ids of live connections.',
        );
      }
      return encodeCommandComplete('KILL_CLIENT');
    }
    case 'set': {
      if (FAKE_PARAMS.has(cmd.key)) return Buffer.concat([encodeNotice('SET ignored'), encodeCommandComplete('SET')]);
      if (!(RUNTIME_SETTINGS as readonly string[]).includes(cmd.key)) {
        return err(
          ConsoleSqlState.InvalidParameterValue,
          `parameter "${cmd.key}" cannot be changed at runtime`,
          `Only ${RUNTIME_SETTINGS.join(' and ')} can be SET; change the others in the configuration file and RELOAD.`,
        );
      }
      if (role !== 'admin') return adminNeeded();
      const key = cmd.key as RuntimeSetting;
      const parsed = parseValue(key, cmd.value);
      if (!parsed.ok) return err(ConsoleSqlState.InvalidParameterValue, parsed.message, parsed.hint);
      if (key === 'require_secure_transport' && parsed.value === true && !view.config().ssl) {
        return err(
          ConsoleSqlState.InvalidParameterValue,
          'require_secure_transport cannot be on while ssl = off',
          'Turn ssl on in the configuration file and RELOAD first.',
        );
      }
      if (key === 'ssl_min_protocol_version') {
        const bad = rangeError(parsed.value as TlsVersionName, view.config().ssl_max_protocol_version);
        if (bad) {
          return err(
            ConsoleSqlState.InvalidParameterValue,
            bad,
            'Lower the minimum, or raise ssl_max_protocol_version in the configuration file and RELOAD.',
          );
        }
      }
      const canonical = typeof parsed.value === 'boolean' ? (parsed.value ? 'on' : 'off') : String(parsed.value);
      if (view.cluster) return setAcrossWorkers(key, canonical, view.cluster);
      view.setRuntime(key, canonical);
      return encodeCommandComplete('SET');
    }
  }
}
