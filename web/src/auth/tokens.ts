/** Where the tokens live: the access token in memory only; the refresh token in this tab's
 * sessionStorage (a reload signs in again from it; closing the tab forgets it).
 *
 * A duplicated tab (or one opened by window.open) starts with a copy of that storage, and so with
 * a single-use token its original still holds: whichever renewed second would present a spent
 * token and end the session for both (REFRESH_TOKEN_REUSED). So a page that leaves hands the token
 * over explicitly (`pagehide` marks it), and a new page takes a token only when it was handed
 * over; an unmarked one belongs to a page still alive elsewhere, and this tab signs in afresh.
 * Listeners hear of each new access token (sockets re-authenticate with it) and of signing out. */

const REFRESH_KEY = "stockfolio.refreshToken";
/** Set by a page as it goes: the refresh token beside it is free for the next page. */
const HANDED_OVER_KEY = "stockfolio.refreshTokenHandedOver";

export type Tokens = {
  accessToken?: string;
  refreshToken?: string;
  accessTokenExpiresAt?: string;
};

type Listener = (accessToken: string | null) => void;

let access: string | null = null;
let accessExpiresAt = 0;
let refresh: string | null = null;
const listeners = new Set<Listener>();

function stored(action: (storage: Storage) => string | null | void): string | null {
  try {
    return action(sessionStorage) ?? null;
  } catch {
    return null; // storage disabled: a reload then asks to sign in again
  }
}

/** At boot: take the refresh token the previous page of this tab handed over, and hand it over in
 * turn when this page goes (a reload, a navigation, the back-forward cache). */
export function adoptRefreshToken(): void {
  const token = stored((s) => s.getItem(REFRESH_KEY));
  const handedOver = stored((s) => s.getItem(HANDED_OVER_KEY)) === "1";
  stored((s) => s.removeItem(HANDED_OVER_KEY));
  if (token && handedOver) refresh = token;
  else if (token) stored((s) => s.removeItem(REFRESH_KEY)); // a copy of a live tab's: not ours
  window.addEventListener("pagehide", () => {
    if (refresh) stored((s) => s.setItem(HANDED_OVER_KEY, "1"));
  });
  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    // Back from the back-forward cache: this page holds the token again, and a later page of
    // this tab may have rotated it meanwhile.
    stored((s) => s.removeItem(HANDED_OVER_KEY));
    refresh = stored((s) => s.getItem(REFRESH_KEY)) ?? refresh;
  });
}

export function accessToken(): string | null {
  return access;
}

/** Milliseconds until the access token expires (negative once it has). */
export function accessTokenTtl(): number {
  return accessExpiresAt - Date.now();
}

export function refreshToken(): string | null {
  return refresh;
}

export function storeTokens(tokens: Tokens): void {
  if (!tokens.accessToken || !tokens.refreshToken) throw new Error("the API sent no tokens");
  access = tokens.accessToken;
  accessExpiresAt = tokens.accessTokenExpiresAt ? Date.parse(tokens.accessTokenExpiresAt) : 0;
  refresh = tokens.refreshToken;
  stored((s) => s.setItem(REFRESH_KEY, tokens.refreshToken ?? ""));
  for (const listener of listeners) listener(access);
}

export function clearTokens(): void {
  access = null;
  accessExpiresAt = 0;
  refresh = null;
  stored((s) => {
    s.removeItem(REFRESH_KEY);
    s.removeItem(HANDED_OVER_KEY);
  });
  for (const listener of listeners) listener(null);
}

/** Hears each new access token (null when signed out); returns the unsubscribe. */
export function onAccessToken(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
