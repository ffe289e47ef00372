/**
 * Where the page is. The server serves the app for `/` and `/messages/<id>` only (a message's page is
 * a deep link, docs/console.md), so the other views live in the fragment: `/#/search?q=...`,
 * `/#/upstreams`, ... A reload or a shared link lands on the same view.
 */

export type View =
  | { readonly name: 'live' }
  | { readonly name: 'search'; readonly q: string }
  | { readonly name: 'message'; readonly id: string }
  | { readonly name: 'upstreams' }
  | { readonly name: 'errors' }
  | { readonly name: 'queue' }
  | { readonly name: 'charts'; readonly range: '1h' | '24h' };

export function current(loc: Location = window.location): View {
  const message = /^\/messages\/(.+)$/.exec(loc.pathname);
  if (message) return { name: 'message', id: safeDecode(message[1]!) };
  const [route = '', query = ''] = loc.hash.replace(/^#\/?/, '').split('?', 2);
  const params = new URLSearchParams(query);
  switch (route) {
    case 'search':
      return { name: 'search', q: params.get('q') ?? '' };
    case 'upstreams':
    case 'errors':
    case 'queue':
      return { name: route };
    case 'charts':
      return { name: 'charts', range: params.get('range') === '24h' ? '24h' : '1h' };
    default:
      return { name: 'live' };
  }
}

export function href(view: View): string {
  switch (view.name) {
    case 'live':
      return '/';
    case 'message':
      return `/messages/${encodeURIComponent(view.id)}`;
    case 'search':
      return view.q ? `/#/search?${new URLSearchParams({ q: view.q }).toString()}` : '/#/search';
    case 'charts':
      return view.range === '1h' ? '/#/charts' : '/#/charts?range=24h';
    default:
      return `/#/${view.name}`;
  }
}

/** Moves to `to` without reloading the page; listeners of `popstate` hear of it. */
export function navigate(to: string, replace = false): void {
  if (replace) window.history.replaceState(null, '', to);
  else window.history.pushState(null, '', to);
  window.dispatchEvent(new PopStateEvent('popstate'));
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
