/** Where the tokens live: the access token in memory only, the refresh token in this tab's
 * sessionStorage (gone when the tab closes; a reload signs in again from it). Listeners hear of a
 * new access token (sockets re-authenticate with it) and of a session that ended. */

const REFRESH_KEY = "stockfolio.refreshToken";

export type Tokens = {
  accessToken?: string;
  refreshToken?: string;
  accessTokenExpiresAt?: string;
};

type Listener = (accessToken: string | null) => void;

let access: string | null = null;
let accessExpiresAt = 0;
const listeners = new Set<Listener>();

export function accessToken(): string | null {
  return access;
}

/** Milliseconds until the access token expires (negative once it has). */
export function accessTokenTtl(): number {
  return accessExpiresAt - Date.now();
}

export function refreshToken(): string | null {
  try {
    return sessionStorage.getItem(REFRESH_KEY);
  } catch {
    return null; // storage disabled: a reload then asks to sign in again
  }
}

export function storeTokens(tokens: Tokens): void {
  if (!tokens.accessToken || !tokens.refreshToken) throw new Error("the API sent no tokens");
  access = tokens.accessToken;
  accessExpiresAt = tokens.accessTokenExpiresAt ? Date.parse(tokens.accessTokenExpiresAt) : 0;
  try {
    sessionStorage.setItem(REFRESH_KEY, tokens.refreshToken);
  } catch {
    // keep the session for this page's life only
  }
  for (const listener of listeners) listener(access);
}

export function clearTokens(): void {
  access = null;
  accessExpiresAt = 0;
  try {
    sessionStorage.removeItem(REFRESH_KEY);
  } catch {
    // nothing stored
  }
  for (const listener of listeners) listener(null);
}

/** Hears each new access token (null when signed out); returns the unsubscribe. */
export function onAccessToken(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
