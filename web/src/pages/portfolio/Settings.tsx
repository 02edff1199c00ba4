/** Rename a portfolio, describe it, or delete it (with its trades). */

import { useLocation } from "preact-iso";
import { useEffect, useState } from "preact/hooks";
import { api, envelope, type Portfolio } from "../../api/client";
import { ApiError } from "../../api/errors";
import { ErrorBanner, Field } from "../../components/form";

export function Settings(props: { portfolio: Portfolio; onSaved: () => void }) {
  const p = props.portfolio;
  const id = p.id ?? "";
  const { route } = useLocation();
  const [name, setName] = useState(p.name ?? "");
  const [description, setDescription] = useState(p.description ?? "");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState(false);
  useEffect(() => {
    setName(p.name ?? "");
    setDescription(p.description ?? "");
  }, [p.name, p.description]);

  async function save(event: Event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setSaved(false);
    try {
      await envelope(
        api().PUT("/api/v1/portfolios/{id}", {
          params: { path: { id } },
          body: { name: name.trim(), description: description.trim() },
        }),
      );
      setSaved(true);
      props.onSaved();
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  async function remove() {
    if (!confirm(`Delete "${p.name}" and all its trades? This cannot be undone.`)) return;
    setBusy(true);
    setError(null);
    try {
      await api().DELETE("/api/v1/portfolios/{id}", { params: { path: { id } } });
      route("/", true);
    } catch (failure) {
      setError(failure);
      setBusy(false);
    }
  }

  const fieldError = (field: string) => (error instanceof ApiError ? error.field(field) : undefined);
  return (
    <details class="card" data-testid="portfolio-settings">
      <summary>
        <h2 class="inline">Settings</h2>
      </summary>
      <ErrorBanner error={error} testid="settings-error" />
      <form onSubmit={save} data-testid="settings-form">
        <Field label="Portfolio name" id="settings-name" error={fieldError("name")}>
          <input id="settings-name" required maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </Field>
        <Field label="Description" id="settings-description" error={fieldError("description")}>
          <input
            id="settings-description"
            maxLength={1000}
            value={description}
            onInput={(e) => setDescription(e.currentTarget.value)}
          />
        </Field>
        <div class="row spread">
          <button type="submit" class="primary" disabled={busy || !name.trim()} data-testid="settings-save">
            Save
          </button>
          <button type="button" class="danger" disabled={busy} onClick={remove} data-testid="portfolio-delete">
            Delete portfolio
          </button>
        </div>
        {saved && (
          <p class="banner notice" role="status" data-testid="settings-saved">
            Saved.
          </p>
        )}
      </form>
    </details>
  );
}
