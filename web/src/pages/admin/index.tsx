/** Admin (admins only): every account, searchable, with its roles; and each service's health as
 * the facade probes it (README, "Users and authentication", "Health, registry, metrics"). */

import { useEffect, useState } from "preact/hooks";
import { api, envelope, type Pagination, type Schemas, type User } from "../../api/client";
import { ApiError } from "../../api/errors";
import type { paths } from "../../api/schema";
import { isAdmin, useSession } from "../../auth/session";
import { ErrorBanner, NoticeBanner } from "../../components/form";
import { Pager, Table } from "../../components/Table";
import { dateTime } from "../../format";
import "./admin.css";

type ServiceHealth = Schemas["ServiceHealth"];
type ServiceName = paths["/health/{service}"]["get"]["parameters"]["path"]["service"];
type Role = NonNullable<Schemas["stockfolio.users.v1.User"]["roles"]>[number];

const SERVICES: ServiceName[] = ["users", "assistant", "terminal", "workspace", "portfolio"];
const PAGE_SIZE = 20;
const HEALTH_EVERY_MS = 10_000;

/** Every service's health. /health/all answers 503 when one is down, and the client turns that
 * into an error (its report is in the error envelope's `data`), so then each service is asked
 * on its own: the ones serving say so, the others give the reason. */
async function loadHealth(): Promise<ServiceHealth[]> {
  try {
    const { data } = await envelope(api().GET("/health/all"));
    return data.services ?? [];
  } catch (failure) {
    if (!(failure instanceof ApiError) || failure.status !== 503) throw failure;
  }
  return Promise.all(
    SERVICES.map(async (name) => {
      try {
        const { data } = await envelope(api().GET("/health/{service}", { params: { path: { service: name } } }));
        return data;
      } catch (failure) {
        const reason = failure instanceof Error ? failure.message : "unreachable";
        return { name, status: "NOT_SERVING", addresses: [{ address: reason, status: "UNREACHABLE" }] } as ServiceHealth;
      }
    }),
  );
}

function Users({ me }: { me: User }) {
  const [query, setQuery] = useState("");
  const [search, setSearch] = useState("");
  const [page, setPage] = useState(1);
  const [users, setUsers] = useState<User[] | null>(null);
  const [pagination, setPagination] = useState<Pagination | undefined>();
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState("");
  // The role a change asked for, shown (and the box disabled) until the API answers.
  const [pending, setPending] = useState<Record<string, boolean>>({});

  useEffect(() => {
    const params = { query: search ? { page, limit: PAGE_SIZE, q: search } : { page, limit: PAGE_SIZE } };
    envelope(api().GET("/api/v1/users", { params })).then((answer) => {
      setUsers(answer.data);
      setPagination(answer.pagination);
      setError(null);
    }, setError);
  }, [search, page]);

  const setAdmin = async (user: User, admin: boolean) => {
    const roles: Exclude<Role, "unspecified">[] = admin ? ["user", "admin"] : ["user"];
    if (user.id === me.id && !admin && !window.confirm("Remove your own admin role? Your session ends and you lose this page.")) {
      return;
    }
    setNotice("");
    setError(null);
    setPending((p) => ({ ...p, [user.id ?? ""]: admin }));
    try {
      const { data } = await envelope(
        api().PUT("/api/v1/users/{id}", { params: { path: { id: user.id ?? "" } }, body: { roles } }),
      );
      setUsers((all) => (all ?? []).map((u) => (u.id === data.id ? data : u)));
      setNotice(`${data.email ?? "The user"} is now ${admin ? "an admin" : "a user"}; their sessions were ended.`);
    } catch (failure) {
      setError(failure); // the box goes back to what the API holds: the list is unchanged
    } finally {
      setPending(({ [user.id ?? ""]: _, ...rest }) => rest);
    }
  };

  const total = pagination?.totalPages ?? 1;
  return (
    <section class="card" aria-labelledby="users-title">
      <div class="row spread">
        <h2 id="users-title">Users{pagination ? ` (${pagination.total})` : ""}</h2>
        <form
          role="search"
          class="row admin-search"
          onSubmit={(e) => {
            e.preventDefault();
            setPage(1);
            setSearch(query.trim());
          }}
        >
          <label for="admin-user-search">Search by email or name</label>
          <input id="admin-user-search" type="search" data-testid="admin-user-search" value={query} onInput={(e) => setQuery(e.currentTarget.value)} />
          <button type="submit">Search</button>
        </form>
      </div>
      <ErrorBanner error={error} testid="admin-error" />
      <NoticeBanner notice={notice} testid="admin-notice" />
      {users === null ? (
        <p class="loading">Loading users…</p>
      ) : users.length === 0 ? (
        <p class="muted">No account matches “{search}”.</p>
      ) : (
        <Table
          data-testid="admin-users"
          columns={[
            "Email",
            "Name",
            "Admin",
            { label: "Created", class: "hide-narrow" },
            { label: "Last sign-in", class: "hide-narrow" },
          ]}
        >
          {users.map((user) => (
            <tr key={user.id} data-testid="admin-user" data-email={user.email}>
              <td class="wrap">{user.email}</td>
              <td>{user.name}</td>
              <td>
                <input
                  type="checkbox"
                  class="check"
                  aria-label={`Admin: ${user.email ?? ""}`}
                  data-testid="admin-role"
                  checked={pending[user.id ?? ""] ?? isAdmin(user)}
                  disabled={pending[user.id ?? ""] !== undefined}
                  onChange={(e) => void setAdmin(user, e.currentTarget.checked)}
                />
              </td>
              <td class="hide-narrow">{dateTime(user.createdAt)}</td>
              <td class="hide-narrow">{dateTime(user.lastLogin)}</td>
            </tr>
          ))}
        </Table>
      )}
      {total > 1 && (
        <Pager
          label="Pages of users"
          class="row"
          page={page}
          pages={total}
          onPage={setPage}
          previous="Previous"
          next="Next"
        />
      )}
    </section>
  );
}

function Health() {
  const [services, setServices] = useState<ServiceHealth[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [checkedAt, setCheckedAt] = useState<Date | null>(null);

  const check = () =>
    loadHealth().then(
      (found) => {
        setServices(found);
        setError(null);
        setCheckedAt(new Date());
      },
      setError,
    );

  useEffect(() => {
    void check();
    const timer = setInterval(() => void check(), HEALTH_EVERY_MS);
    return () => clearInterval(timer);
  }, []);

  return (
    <section class="card" aria-labelledby="health-title">
      <div class="row spread">
        <h2 id="health-title">Service health</h2>
        <div class="row">
          {checkedAt && <span class="muted small">checked {checkedAt.toLocaleTimeString()}</span>}
          <button type="button" onClick={() => void check()} data-testid="health-refresh">
            Check now
          </button>
        </div>
      </div>
      <ErrorBanner error={error} testid="health-error" />
      {services && (
        <Table
          data-testid="admin-health"
          columns={[
            "Service",
            "Status",
            { label: "Latency", class: "num" },
            "Replicas",
          ]}
        >
          {services.map((s) => (
            <tr key={s.name} data-testid="health-service" data-service={s.name} class={s.status === "SERVING" ? undefined : "bad"}>
              <th scope="row">{s.name}</th>
              <td>
                <span class={s.status === "SERVING" ? "up" : "down"}>{s.status === "SERVING" ? "Serving" : "Not serving"}</span>
              </td>
              <td class="num">{s.latencyMs !== undefined ? `${s.latencyMs.toFixed(1)} ms` : "—"}</td>
              <td>
                <ul class="replicas">
                  {(s.addresses ?? []).map((a) => (
                    <li key={a.address}>
                      <code>{a.address}</code> {a.status}
                      {a.error ? `: ${a.error}` : ""}
                    </li>
                  ))}
                </ul>
              </td>
            </tr>
          ))}
        </Table>
      )}
    </section>
  );
}

export default function AdminPage() {
  const session = useSession();
  if (session.status !== "signedIn") return null;
  if (!isAdmin(session.user)) {
    return (
      <section aria-labelledby="admin-title">
        <h1 id="admin-title">Admin</h1>
        <p class="banner error" role="alert" data-testid="admin-refused">
          This page is for administrators only.
        </p>
      </section>
    );
  }
  return (
    <section class="admin" aria-labelledby="admin-title">
      <h1 id="admin-title">Admin</h1>
      <Health />
      <Users me={session.user} />
    </section>
  );
}
