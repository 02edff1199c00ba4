/** Who is signed in: sign up, sign in, sign out, and the silent sign-in of a reload. */

import { useEffect, useState } from "preact/hooks";
import { api, endSession, envelope, onSessionEnded, renewAccessToken, type User } from "../api/client";
import { ApiError } from "../api/errors";
import {
  accessTokenTtl,
  adoptRefreshToken,
  clearTokens,
  onAccessToken,
  refreshToken,
  storeTokens,
} from "./tokens";

export type Session =
  | { status: "loading" }
  | { status: "signedOut"; message?: string }
  | { status: "signedIn"; user: User };

let session: Session = { status: "loading" };
const listeners = new Set<(session: Session) => void>();
let renewalTimer: ReturnType<typeof setTimeout> | undefined;
// Set while this tab signs out: the session it revokes ends its sockets and calls too (4401,
// SESSION_REVOKED), and those echoes must not replace "You are signed out." with "ended".
let signingOut = false;

function publish(next: Session): void {
  if (next.status === "signedIn") signingOut = false; // a new session's ends count again
  session = next;
  for (const listener of listeners) listener(session);
}

export function currentSession(): Session {
  return session;
}

export function isAdmin(user: User): boolean {
  return (user.roles ?? []).includes("admin");
}

/** Renews the access token a little before it expires, so sockets and calls never see it lapse. */
function scheduleRenewal(): void {
  clearTimeout(renewalTimer);
  const ttl = accessTokenTtl();
  if (ttl <= 0) return;
  renewalTimer = setTimeout(
    () => {
      renewAccessToken().catch(() => undefined); // a failure ends the session through its listener
    },
    Math.max(ttl - 60_000, ttl / 2),
  );
}

export async function signIn(email: string, password: string): Promise<void> {
  const { data } = await envelope(api().POST("/api/v1/auth/login", { body: { email, password } }));
  storeTokens(data.tokens ?? {});
  if (!data.user) throw new ApiError(500, "EMPTY", "The API sent no user.");
  publish({ status: "signedIn", user: data.user });
}

export async function signUp(email: string, password: string, name: string): Promise<void> {
  const body = name ? { email, password, name } : { email, password };
  const { data } = await envelope(api().POST("/api/v1/auth/register", { body }));
  storeTokens(data.tokens ?? {});
  if (!data.user) throw new ApiError(500, "EMPTY", "The API sent no user.");
  publish({ status: "signedIn", user: data.user });
}

export async function signOut(): Promise<void> {
  signingOut = true;
  try {
    await api().POST("/api/v1/auth/logout", { body: {} });
  } catch {
    // the tokens go anyway: signing out never fails on the user's side
  }
  clearTokens();
  publish({ status: "signedOut", message: "You are signed out." });
}

/** The signed-in user as the API answered a change of their own account (a new name or email):
 * the header and every page show it at once. Another account's answer changes nothing here. */
export function updateSignedInUser(user: User): void {
  if (session.status === "signedIn" && session.user.id === user.id) publish({ status: "signedIn", user });
}

/** Signed out after this account was deleted: its sessions ended with it, so nothing is asked of
 * the API (a logout would only be refused), and `message` says why on the sign-in page. */
export function forgetDeletedAccount(message: string): void {
  // The sockets' echoes of the deletion (4401, SESSION_REVOKED) must not replace `message`.
  signingOut = true;
  clearTokens();
  publish({ status: "signedOut", message });
}

/** At boot: the refresh token this tab's previous page left signs the user in again. */
export async function restoreSession(): Promise<void> {
  adoptRefreshToken();
  onAccessToken((token) => (token ? scheduleRenewal() : clearTimeout(renewalTimer)));
  onSessionEnded((message) => {
    if (!signingOut) publish({ status: "signedOut", message });
  });
  if (!refreshToken()) {
    publish({ status: "signedOut" });
    return;
  }
  try {
    await renewAccessToken();
    const { data } = await envelope(api().GET("/api/v1/users/me"));
    publish({ status: "signedIn", user: data });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      endSession(error.message);
    } else {
      // The API is unreachable or failing: the refresh token stays, so a reload tries again.
      publish({
        status: "signedOut",
        message: `${error instanceof Error ? error.message : "Could not restore your session."} Reload to try again, or sign in.`,
      });
    }
  }
}

export function useSession(): Session {
  const [value, setValue] = useState(session);
  useEffect(() => {
    listeners.add(setValue);
    setValue(session);
    return () => {
      listeners.delete(setValue);
    };
  }, []);
  return value;
}
