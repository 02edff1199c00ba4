/** Downloads the portfolio's trades and positions as CSV or JSON (GET /api/v1/export). */

import { useState } from "preact/hooks";
import { api } from "../../api/client";
import { ErrorBanner } from "../../components/form";

type Format = "csv" | "json";

export function Export(props: { portfolioId: string; name: string }) {
  const [busy, setBusy] = useState<Format | null>(null);
  const [error, setError] = useState<unknown>(null);

  async function download(format: Format) {
    setBusy(format);
    setError(null);
    try {
      const { data } = await api().GET("/api/v1/export", {
        params: { query: { portfolioId: props.portfolioId, format } },
        parseAs: "blob",
      });
      if (!data) throw new Error("The export was empty.");
      const url = URL.createObjectURL(data);
      const link = document.createElement("a");
      link.href = url;
      const day = new Date().toISOString().slice(0, 10);
      link.download = `${props.name.replace(/[^\w.-]+/g, "_")}-${day}.${format}`;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(null);
    }
  }

  return (
    <section class="card" aria-labelledby="export-title">
      <h2 id="export-title">Export</h2>
      <p class="muted">Trades and positions, as a spreadsheet (CSV) or as data (JSON).</p>
      <ErrorBanner error={error} testid="export-error" />
      <div class="row">
        {(["csv", "json"] as const).map((format) => (
          <button
            key={format}
            type="button"
            disabled={busy !== null}
            onClick={() => download(format)}
            data-testid={`export-${format}`}
          >
            {busy === format ? "Preparing…" : `Download ${format.toUpperCase()}`}
          </button>
        ))}
      </div>
    </section>
  );
}
