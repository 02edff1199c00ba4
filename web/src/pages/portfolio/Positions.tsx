/** Positions with live prices; FIFO or average cost (the API's costMethod). */

import { useState } from "preact/hooks";
import { api, envelope, type Position } from "../../api/client";
import { useApi } from "../../api/useApi";
import { CheckBox, ErrorBanner } from "../../components/form";
import { Table } from "../../components/Table";
import { money, price as formatPrice, quantity, ratio, signed, trend } from "../../format";
import { usePrice } from "../../ws/portfolioFeed";

type CostMethod = "fifo" | "average";

async function allPositions(portfolioId: string, costMethod: CostMethod, includeClosed: boolean) {
  const all: Position[] = [];
  for (let page = 1; ; page += 1) {
    const body = await envelope(
      api().GET("/api/v1/positions", {
        params: { query: { portfolioId, costMethod, includeClosed, page, limit: 100 } },
      }),
    );
    all.push(...body.data);
    if (page >= (body.pagination?.totalPages ?? 1)) return all;
  }
}

export function Positions(props: { portfolioId: string; currency: string; version: string }) {
  const [method, setMethod] = useState<CostMethod>("fifo");
  const [closed, setClosed] = useState(false);
  const positions = useApi(
    () => allPositions(props.portfolioId, method, closed),
    [props.portfolioId, method, closed, props.version],
  );
  const rows = positions.data ?? [];
  return (
    <section class="card" aria-labelledby="positions-title">
      <div class="row spread">
        <h2 id="positions-title">Positions</h2>
        <div class="row">
          <div class="segmented" role="group" aria-label="Cost method" data-testid="cost-method">
            {(["fifo", "average"] as const).map((m) => (
              <button
                key={m}
                type="button"
                aria-pressed={method === m}
                onClick={() => setMethod(m)}
                data-testid={`cost-method-${m}`}
              >
                {m === "fifo" ? "FIFO" : "Average cost"}
              </button>
            ))}
          </div>
          <label class="row">
            <CheckBox checked={closed} onChecked={setClosed} data-testid="include-closed" />
            Closed too
          </label>
        </div>
      </div>
      <ErrorBanner error={positions.error} testid="positions-error" />
      <Table
        data-testid="positions-table"
        aria-busy={positions.loading}
        empty={
          rows.length === 0 &&
          !positions.loading && (
            <>
              No positions yet: <a href={`/trade?portfolio=${props.portfolioId}`}>make a trade</a>.
            </>
          )
        }
        emptyTestid="no-positions"
        columns={[
          "Symbol",
          { label: "Quantity", class: "num" },
          { label: "Avg cost", class: "num hide-narrow" },
          { label: "Price", class: "num" },
          { label: "Value", class: "num" },
          { label: "Unrealized", class: "num" },
          { label: "Realized", class: "num hide-narrow" },
          { label: "Weight", class: "num hide-narrow" },
        ]}
      >
        {rows.map((p) => (
          <PositionRow key={p.symbol} position={p} currency={props.currency} />
        ))}
      </Table>
    </section>
  );
}

/** One row: its own subscription to its symbol, so a tick redraws one row, not the table. */
function PositionRow({ position, currency }: { position: Position; currency: string }) {
  const symbol = (position.symbol ?? "").toUpperCase();
  const held = Number(position.quantity) !== 0;
  const tick = usePrice(held ? symbol : undefined);
  // Ticks are in the listing's currency; the position's money is in the portfolio's.
  const listed = position.currency || currency;
  const foreign = listed !== currency;
  // Without a rate (the listing's currency not known yet) a tick cannot be converted: the
  // position keeps the price it was valued at, as the live totals do.
  const rate = position.fxRate ? Number(position.fxRate) : undefined;
  const localPrice = tick ? Number(tick.price) : Number(position.localPrice ?? position.price ?? 0);
  const price = tick && rate !== undefined ? Number(tick.price) * rate : Number(position.price ?? 0);
  const quantityHeld = Number(position.quantity ?? 0);
  const value = quantityHeld * price;
  const costBasis = Number(position.costBasis ?? 0);
  const unrealized = held ? value - costBasis : 0;
  const change = tick ? Number(tick.change) : 0;
  return (
    <tr data-testid={`position-${symbol}`}>
      <th scope="row">
        <a href={`/stocks/${encodeURIComponent(symbol)}`}>{symbol}</a>
      </th>
      <td class="num" data-testid={`quantity-${symbol}`}>
        {quantity(position.quantity)}
      </td>
      <td class="num hide-narrow">{formatPrice(position.averageCost)}</td>
      <td class="num">
        <span
          key={tick?.time}
          class={tick ? `flash-${change >= 0 ? "up" : "down"}` : ""}
          data-testid={`price-${symbol}`}
          data-time={tick?.time ?? ""}
        >
          {foreign ? money(localPrice, listed) : formatPrice(price)}
        </span>
        {foreign && (
          <>
            <br />
            <small class="muted" data-testid={`fx-${symbol}`} data-currency={listed}>
              {listed}→{currency} {position.fxRate}
            </small>
          </>
        )}
      </td>
      <td class="num" data-testid={`value-${symbol}`}>
        {money(value, currency)}
      </td>
      <td class={`num ${trend(unrealized)}`} data-testid={`unrealized-${symbol}`}>
        {signed(unrealized, currency)}
        <br />
        <small>{costBasis ? ratio(unrealized / costBasis, true) : ""}</small>
      </td>
      <td class={`num hide-narrow ${trend(position.realizedGain)}`} data-testid={`realized-${symbol}`}>
        {signed(position.realizedGain, currency)}
      </td>
      <td class="num hide-narrow">{ratio(position.weight)}</td>
    </tr>
  );
}
