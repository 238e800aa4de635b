/**
 * The gateway's pools (pool_mode = session | transaction), built once at start: the default login reaches the
 * configured upstream — read through `state()` at each login, so a reload's new upstream is used — and takes a
 * backend password from auth_file when the entry is one (a SCRAM secret cannot log in; pass-through keys do).
 */
import type { State } from '../state.js';
import { PasswordLogin } from './login.js';
import { Pools } from './pools.js';
import { poolSettingsFrom } from './settings.js';

export function poolsForGateway(
  state: () => State,
  log: (event: string, detail: Record<string, unknown>) => void,
): Pools | undefined {
  const c = state().config;
  if (c.pool_mode === 'relay') return undefined;
  const login = new PasswordLogin({
    get upstream() {
      return state().upstream;
    },
    password: (user) => {
      const own = state().authFile?.get(user)?.secret;
      return own !== undefined && !own.startsWith('SCRAM-SHA-256$') ? own : undefined;
    },
  });
  return new Pools(poolSettingsFrom(c), login, (srv) => login.cancel(srv), log);
}
