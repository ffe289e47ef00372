/**
 * The login form. The contract with outside tests (docs/console.md): one input[type=password], a
 * username field when console users are configured, a submit button.
 */
import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { ApiError, describe, type Api, type Session } from '../api.js';

export function Login(props: { api: Api; login: string; note: string | null; onIn: (session: Session) => void }): JSX.Element {
  const withUser = props.login === 'username';
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      props.onIn(await props.api.login(password, withUser ? username : null));
    } catch (failure) {
      setPassword('');
      setError(loginError(failure, withUser));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="login" id="main">
      <h1>mailtrail</h1>
      <form onSubmit={(e) => void submit(e)} aria-describedby={error ? 'login-error' : undefined}>
        {props.note ? <p class="note">{props.note}</p> : null}
        {withUser ? (
          <label>
            Username
            <input name="username" autocomplete="username" required value={username} onInput={(e) => setUsername(e.currentTarget.value)} />
          </label>
        ) : null}
        <label>
          {withUser ? 'Password' : 'HTTP token'}
          <input
            type="password"
            name="password"
            autocomplete={withUser ? 'current-password' : 'off'}
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        <button type="submit" disabled={busy}>
          {busy ? 'Logging in…' : 'Log in'}
        </button>
        {error ? (
          <p class="error" id="login-error" role="alert">
            {error}
          </p>
        ) : null}
      </form>
    </main>
  );
}

function loginError(e: unknown, withUser: boolean): string {
  if (e instanceof ApiError) {
    if (e.code === 'bad_credentials') return withUser ? 'Wrong username or password.' : 'Wrong token.';
    if (e.code === 'locked') return 'Too many failed logins: this address or user is locked out for a while.';
  }
  return `Login failed: ${describe(e)}`;
}
