/** The shell: header, navigation, the signed-in guard and the routed page. */

import { ErrorBoundary, LocationProvider, Route, Router, useLocation } from "preact-iso";
import { useEffect } from "preact/hooks";
import { isAdmin, signOut, type Session, useSession } from "./auth/session";
import { NOT_FOUND, ROUTES } from "./routes";
import { useFeedStatus } from "./ws/portfolioFeed";

export function App() {
  return (
    <LocationProvider>
      <Shell />
    </LocationProvider>
  );
}

function Shell() {
  const session = useSession();
  const { path, route } = useLocation();
  const publicPage = ROUTES.some((r) => r.public && r.path === path);

  useEffect(() => {
    if (session.status === "signedOut" && !publicPage) {
      route(`/sign-in?next=${encodeURIComponent(path)}`, true);
    }
  }, [session.status, publicPage, path]);

  if (session.status === "loading") {
    return (
      <main class="boot" aria-busy="true" data-testid="app-loading">
        Loading…
      </main>
    );
  }
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      {session.status === "signedIn" && <Header session={session} />}
      <main id="main" class="page" tabIndex={-1}>
        <ErrorBoundary>
          <Router>
            {[
              ...ROUTES.filter((r) => r.public || session.status === "signedIn").map((r) => (
                <Route key={r.path} path={r.path} component={r.page} />
              )),
              <Route key="*" default component={session.status === "signedIn" ? NOT_FOUND : Empty} />,
            ]}
          </Router>
        </ErrorBoundary>
      </main>
    </>
  );
}

function Empty() {
  return null;
}

function Header({ session }: { session: Extract<Session, { status: "signedIn" }> }) {
  const { path } = useLocation();
  const feed = useFeedStatus();
  const admin = isAdmin(session.user);
  const links = ROUTES.filter((r) => r.label && (!r.admin || admin));
  return (
    <header class="top">
      <a class="brand" href="/">
        Stockfolio
      </a>
      <nav aria-label="Main">
        <ul>
          {links.map((r) => (
            <li key={r.path}>
              <a href={r.path} aria-current={r.path === path ? "page" : undefined}>
                {r.label}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <div class="who">
        <span
          class={`live live-${feed}`}
          data-testid="feed-status"
          title={`Live prices: ${feed}`}
          aria-label={`Live prices: ${feed}`}
        />
        <span data-testid="user-email">{session.user.name || session.user.email}</span>
        <button type="button" class="link" data-testid="sign-out" onClick={() => void signOut()}>
          Sign out
        </button>
      </div>
    </header>
  );
}
