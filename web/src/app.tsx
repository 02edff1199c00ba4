/** The shell: header, navigation, the signed-in guard and the routed page. */

import { Component, type ComponentChildren } from "preact";
import { ErrorBoundary, LocationProvider, Route, Router, useLocation } from "preact-iso";
import { useEffect } from "preact/hooks";
import { isAdmin, signOut, type Session, useSession } from "./auth/session";
import { AlertBell } from "./components/AlertBell";
import { NOT_FOUND, ROUTES } from "./routes";
import { useFeedStatus } from "./ws/portfolioFeed";

export function App() {
  return (
    <LocationProvider>
      <Shell />
    </LocationProvider>
  );
}

/** Other apps' names for the sign-in and sign-up pages (and the API's: /auth/login, /register):
 * taken to ours, or to the dashboard once signed in. */
const ALIASES: Record<string, string> = {
  "/login": "/sign-in",
  "/signin": "/sign-in",
  "/register": "/sign-up",
  "/signup": "/sign-up",
};

function Shell() {
  const session = useSession();
  // `url` is the path with its query: a page asked for comes back with its query too.
  const { path, url, route } = useLocation();
  const alias = ALIASES[path];
  const publicPage = alias !== undefined || ROUTES.some((r) => r.public && r.path === path);

  useEffect(() => {
    if (alias !== undefined && session.status !== "loading") {
      route(session.status === "signedIn" ? "/" : alias, true);
    } else if (session.status === "signedOut" && !publicPage) {
      route(`/sign-in?next=${encodeURIComponent(url)}`, true);
    }
  }, [session.status, publicPage, url, alias]);

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
          <PageFailed path={path}>
            <Router onRouteChange={focusPage}>
              {[
                ...ROUTES.filter((r) => r.public || session.status === "signedIn").map((r) => (
                  <Route key={r.path} path={r.path} component={r.page} />
                )),
                <Route key="*" default component={session.status === "signedIn" ? NOT_FOUND : Empty} />,
              ]}
            </Router>
          </PageFailed>
        </ErrorBoundary>
      </main>
    </>
  );
}

/** A page that throws while drawing says so instead of leaving the screen blank; going to
 * another page clears it. */
class PageFailed extends Component<{ path: string; children: ComponentChildren }, { error: unknown }> {
  override state = { error: null as unknown };

  override componentDidCatch(error: unknown) {
    this.setState({ error });
  }

  override componentDidUpdate(previous: { path: string }) {
    if (previous.path !== this.props.path && this.state.error !== null) this.setState({ error: null });
  }

  render() {
    if (this.state.error === null) return this.props.children;
    const message = this.state.error instanceof Error ? this.state.error.message : String(this.state.error);
    return (
      <section class="card" role="alert" data-testid="page-failed">
        <h1>This page could not be shown</h1>
        <p>{message}</p>
        <button type="button" onClick={() => location.reload()}>
          Reload
        </button>
      </section>
    );
  }
}

/** After a navigation, focus goes to the new page (screen readers start reading there). */
function focusPage() {
  document.getElementById("main")?.focus({ preventScroll: false });
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
        <AlertBell />
        <span
          class={`live live-${feed}`}
          role="img"
          data-testid="feed-status"
          title={`Live prices: ${feed}`}
          aria-label={`Live prices: ${feed}`}
        />
        <a
          href="/account"
          class="account"
          title="Your account"
          aria-current={path === "/account" ? "page" : undefined}
          data-testid="user-email"
        >
          {session.user.name || session.user.email}
        </a>
        <button type="button" class="link" data-testid="sign-out" onClick={() => void signOut()}>
          Sign out
        </button>
      </div>
    </header>
  );
}
