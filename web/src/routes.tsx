/** The routing table and the navigation: one entry per page. Every page is a lazy chunk of its
 * own (pages/<name>/index.tsx, default export), so the first route ships only what it draws.
 *
 * Adding a page is one line in ROUTES: `{ path, label, page: lazy(() => import("./pages/x")) }`;
 * `label` puts it in the nav, `admin: true` shows it to admins only. */

import type { AnyComponent } from "preact";
import { lazy } from "preact-iso";

export type AppRoute = {
  /** preact-iso pattern: `/portfolios/:id`; read params with useRoute(). */
  path: string;
  page: AnyComponent;
  /** Shown in the nav when set. */
  label?: string;
  /** Only admins see it in the nav (the API refuses others anyway). */
  admin?: boolean;
  /** Reachable signed out (sign-in, sign-up); every other page needs a session. */
  public?: boolean;
};

export const ROUTES: AppRoute[] = [
  { path: "/sign-in", page: lazy(() => import("./pages/signin")), public: true },
  { path: "/sign-up", page: lazy(() => import("./pages/signup")), public: true },
  { path: "/", label: "Dashboard", page: lazy(() => import("./pages/dashboard")) },
  { path: "/overview", label: "Overview", page: lazy(() => import("./pages/overview")) },
  { path: "/portfolios/:id", page: lazy(() => import("./pages/portfolio")) },
  { path: "/trade", label: "Trade", page: lazy(() => import("./pages/trade")) },
  { path: "/stocks/:symbol", page: lazy(() => import("./pages/stock")) },
  { path: "/watchlists", label: "Watchlists", page: lazy(() => import("./pages/watchlists")) },
  { path: "/alerts", label: "Alerts", page: lazy(() => import("./pages/alerts")) },
  // ---- Slots for the other pages: uncomment (or add) one line each --------------------------
  { path: "/terminal", label: "Terminal", page: lazy(() => import("./pages/terminal")) },
  { path: "/workspace", label: "Workspace", page: lazy(() => import("./pages/workspace")) },
  { path: "/assistant", label: "Assistant", page: lazy(() => import("./pages/assistant")) },
  { path: "/admin", label: "Admin", admin: true, page: lazy(() => import("./pages/admin")) },
  { path: "/explorer", label: "API", page: lazy(() => import("./pages/explorer")) },
  // Reached from the user's name in the header, not the nav.
  { path: "/account", page: lazy(() => import("./pages/account")) },
];

export const NOT_FOUND: AnyComponent = lazy(() => import("./pages/notfound"));
