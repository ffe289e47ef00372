/** The console's single-page app (docs/console.md, "The pages"): the login, then the views. */
import { render, type JSX } from 'preact';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { Api, ApiError, describe, type Session } from './api.js';
import { ErrorNote, Link } from './components.js';
import { Charts } from './pages/charts.js';
import { Errors } from './pages/errors.js';
import { Live } from './pages/live.js';
import { Login } from './pages/login.js';
import { Message } from './pages/message.js';
import { Queue } from './pages/queue.js';
import { Search } from './pages/search.js';
import { Upstreams } from './pages/upstreams.js';
import { current, href, type View } from './router.js';
import './style.css';

type Auth =
  | { readonly state: 'checking' }
  | { readonly state: 'login'; readonly login: string; readonly note: string | null }
  | { readonly state: 'in'; readonly session: Session }
  | { readonly state: 'failed'; readonly error: string };

function App(): JSX.Element {
  const api = useMemo(() => new Api(), []);
  const [auth, setAuth] = useState<Auth>({ state: 'checking' });
  const [view, setView] = useState<View>(current());
  // null: not known yet; the Queue view is offered only when a spool is configured.
  const [spool, setSpool] = useState<boolean | null>(null);

  useEffect(() => {
    const onMove = (): void => setView(current());
    window.addEventListener('popstate', onMove);
    window.addEventListener('hashchange', onMove);
    api.onEnded((login) => setAuth({ state: 'login', login: login ?? 'token', note: 'Your session ended: log in again.' }));
    api.session().then(
      (r) => setAuth('session' in r ? { state: 'in', session: r.session } : { state: 'login', login: r.login, note: null }),
      (e: unknown) => setAuth({ state: 'failed', error: describe(e) }),
    );
    return () => {
      window.removeEventListener('popstate', onMove);
      window.removeEventListener('hashchange', onMove);
    };
  }, [api]);

  const signedIn = auth.state === 'in';
  useEffect(() => {
    if (!signedIn) return;
    api.get('/api/v1/queue', { limit: 1 }).then(
      () => setSpool(true),
      (e: unknown) => setSpool(!(e instanceof ApiError && e.code === 'no_spool')),
    );
  }, [api, signedIn]);

  useEffect(() => {
    document.title = `${titles[view.name]} · mailtrail`;
  }, [view]);

  if (auth.state === 'checking') return <p class="loading">Loading…</p>;
  if (auth.state === 'failed') return <ErrorNote error={`The console cannot reach its server: ${auth.error}`} />;
  if (auth.state === 'login') return <Login api={api} login={auth.login} note={auth.note} onIn={(session) => setAuth({ state: 'in', session })} />;

  const session = auth.session;
  const logout = async (): Promise<void> => {
    await api.logout().catch(() => undefined);
    const again = await api.session().catch(() => ({ login: 'token' }));
    setSpool(null);
    setAuth('session' in again ? { state: 'in', session: again.session } : { state: 'login', login: again.login, note: 'You are logged out.' });
  };
  const tabs: { view: View; label: string }[] = [
    { view: { name: 'live' }, label: 'Transactions' },
    { view: { name: 'search', q: '' }, label: 'Search' },
    { view: { name: 'upstreams' }, label: 'Upstreams' },
    { view: { name: 'errors' }, label: 'Error groups' },
    ...(spool === true ? [{ view: { name: 'queue' } as View, label: 'Queue' }] : []),
    { view: { name: 'charts', range: '1h' }, label: 'Charts' },
  ];

  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <Link href="/" class="brand">
          mailtrail
        </Link>
        <nav aria-label="Views">
          <ul>
            {tabs.map((t) => (
              <li key={t.view.name}>
                <Link href={href(t.view)} aria-current={t.view.name === view.name ? 'page' : undefined}>
                  {t.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <div class="who">
          <span>
            {session.user}
            {session.scope ? <span class="muted"> (mail of {session.scope.users.join(', ')})</span> : null}
          </span>
          {session.via === 'session' ? (
            <button type="button" onClick={() => void logout()}>
              Log out
            </button>
          ) : null}
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <Page view={view} api={api} spool={spool} />
      </main>
    </>
  );
}

const titles: Record<View['name'], string> = {
  live: 'Transactions',
  search: 'Search',
  message: 'Message',
  upstreams: 'Upstreams',
  errors: 'Error groups',
  queue: 'Queue',
  charts: 'Charts',
};

function Page(props: { view: View; api: Api; spool: boolean | null }): JSX.Element {
  const { view, api } = props;
  switch (view.name) {
    case 'live':
      return <Live api={api} />;
    case 'search':
      return <Search api={api} q={view.q} />;
    case 'message':
      return <Message api={api} id={view.id} key={view.id} />;
    case 'upstreams':
      return <Upstreams api={api} />;
    case 'errors':
      return <Errors api={api} />;
    case 'queue':
      return props.spool === false ? <p>No spool is configured: mailtrail holds no queue (docs/config.md).</p> : <Queue api={api} />;
    case 'charts':
      return <Charts api={api} range={view.range} />;
  }
}

render(<App />, document.getElementById('app')!);
