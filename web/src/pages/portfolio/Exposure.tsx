/** Where the portfolio's money is (README: Exposure): its holdings and cash by sector, country,
 * asset type or trading currency, each bucket a bar of its weight with its value and symbols, in
 * the portfolio's currency. A holding whose profile the market cannot give counts as Unknown. */

import { useState } from "preact/hooks";
import { api, envelope, type Schemas } from "../../api/client";
import { useApi } from "../../api/useApi";
import { ErrorBanner } from "../../components/form";
import { money, ratio } from "../../format";

type Dimension = "sectors" | "countries" | "assetTypes" | "currencies";
type Bucket = Schemas["stockfolio.portfolio.v1.ExposureBucket"];

const DIMENSIONS: { value: Dimension; label: string; named: string }[] = [
  { value: "sectors", label: "Sector", named: "sector" },
  { value: "countries", label: "Country", named: "country" },
  { value: "assetTypes", label: "Asset type", named: "asset-type" },
  { value: "currencies", label: "Currency", named: "currency" },
];

export function Exposure(props: { portfolioId: string; currency: string; version: string }) {
  const [dimension, setDimension] = useState<Dimension>("sectors");
  const exposure = useApi(
    () =>
      envelope(
        api().GET("/api/v1/portfolios/{portfolio_id}/exposure", {
          params: { path: { portfolio_id: props.portfolioId } },
        }),
      ),
    [props.portfolioId, props.version],
  );
  const data = exposure.data?.data;
  const currency = data?.currency || props.currency;
  const buckets: Bucket[] = data?.[dimension] ?? [];
  const shown = DIMENSIONS.find((d) => d.value === dimension) ?? DIMENSIONS[0]!;
  return (
    <section class="card" aria-labelledby="exposure-title" data-testid="exposure">
      <div class="row spread">
        <h2 id="exposure-title">Exposure</h2>
        <div class="segmented" role="group" aria-label="Exposure by" data-testid="exposure-by">
          {DIMENSIONS.map((d) => (
            <button
              key={d.value}
              type="button"
              aria-pressed={d.value === dimension}
              onClick={() => setDimension(d.value)}
              data-testid={`exposure-by-${d.named}`}
            >
              {d.label}
            </button>
          ))}
        </div>
      </div>
      <ErrorBanner error={exposure.error} testid="exposure-error" />
      <div class="table-wrap">
        <table data-testid="exposure-buckets" aria-busy={exposure.loading}>
          <thead>
            <tr>
              <th scope="col">{shown.label}</th>
              <th scope="col" class="exposure-bar-cell hide-narrow">
                <span class="sr-only">Weight bar</span>
              </th>
              <th scope="col" class="num">Weight</th>
              <th scope="col" class="num">Value</th>
              <th scope="col" class="hide-narrow">Holdings</th>
            </tr>
          </thead>
          <tbody>
            {buckets.map((b) => (
              <tr key={`${b.cash ? "cash" : "held"}-${b.name}`} data-testid="exposure-bucket">
                <td data-testid="exposure-name">{b.name}</td>
                <td class="exposure-bar-cell hide-narrow" aria-hidden="true">
                  <span class="exposure-bar" style={{ width: `${Number(b.weight || 0) * 100}%` }} />
                </td>
                <td class="num" data-testid="exposure-weight">
                  {ratio(b.weight)}
                </td>
                <td class="num" data-testid="exposure-value">
                  {money(b.value, currency)}
                </td>
                <td class="hide-narrow wrap muted" data-testid="exposure-symbols">
                  {(b.symbols ?? []).join(", ")}
                </td>
              </tr>
            ))}
          </tbody>
          {buckets.length > 0 && (
            <tfoot>
              <tr>
                <th scope="row" colSpan={3}>
                  Total
                </th>
                <td class="num" data-testid="exposure-total">
                  {money(data?.totalValue, currency)}
                </td>
                <td class="hide-narrow" />
              </tr>
            </tfoot>
          )}
        </table>
      </div>
    </section>
  );
}
