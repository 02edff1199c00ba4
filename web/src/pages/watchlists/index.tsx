/** Watchlists: the user's named lists of symbols, each with live prices and the day's change
 * (ticks from /ws/portfolio: the quotes the list came with until the first tick). Create, rename,
 * reorder (up/down), add and remove symbols, delete; every change replaces the whole list. */

import { useState } from "preact/hooks";
import { useApi } from "../../api/useApi";
import {
  createWatchlist,
  deleteWatchlist,
  listWatchlists,
  updateWatchlist,
  type WatchQuote,
  type Watchlist,
} from "../../api/watch";
import { ErrorBanner, Field, Loading } from "../../components/form";
import { change, percent, price, trend } from "../../format";
import { usePrice } from "../../ws/portfolioFeed";

function symbolsOf(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((s) => s.trim().toUpperCase())
    .filter(Boolean);
}

export default function WatchlistsPage() {
  const lists = useApi(listWatchlists, []);
  const [name, setName] = useState("");
  const [symbols, setSymbols] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  async function create(event: Event) {
    event.preventDefault();
    setBusy(true);
    try {
      const made = await createWatchlist(name.trim(), symbolsOf(symbols));
      lists.set([...(lists.data ?? []), made]);
      setName("");
      setSymbols("");
      setError(null);
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  function replaced(list: Watchlist | null, id: string) {
    const shown = lists.data ?? [];
    lists.set(list ? shown.map((w) => (w.id === id ? list : w)) : shown.filter((w) => w.id !== id));
  }

  return (
    <>
      <h1>Watchlists</h1>
      <section class="card" aria-label="New watchlist">
        <form onSubmit={create} class="row" data-testid="watchlist-form">
          <Field label="Name" id="watchlist-name">
            <input id="watchlist-name" value={name} required maxLength={100} onInput={(e) => setName(e.currentTarget.value)} />
          </Field>
          <Field label="Symbols" id="watchlist-symbols" hint="Separated by spaces or commas">
            <input id="watchlist-symbols" value={symbols} onInput={(e) => setSymbols(e.currentTarget.value)} />
          </Field>
          <button type="submit" disabled={busy} data-testid="watchlist-create">
            Create
          </button>
        </form>
        <ErrorBanner error={error} testid="watchlist-error" />
      </section>
      <ErrorBanner error={lists.error} testid="watchlists-error" />
      {lists.loading && !lists.data && <Loading what="watchlists" />}
      {lists.data?.length === 0 && <p class="muted">No watchlists yet.</p>}
      {lists.data?.map((list) => (
        <WatchlistCard key={list.id} list={list} onChange={(next) => replaced(next, list.id)} />
      ))}
    </>
  );
}

function WatchlistCard(props: { list: Watchlist; onChange: (list: Watchlist | null) => void }) {
  const { list, onChange } = props;
  const [renaming, setRenaming] = useState(false);
  const [name, setName] = useState(list.name);
  const [adding, setAdding] = useState("");
  const [error, setError] = useState<unknown>(null);

  async function save(nextName: string, nextSymbols: string[]) {
    try {
      onChange(await updateWatchlist(list.id, nextName, nextSymbols));
      setError(null);
      return true;
    } catch (failure) {
      setError(failure);
      return false;
    }
  }

  function move(index: number, by: number) {
    const next = [...list.symbols];
    const [taken] = next.splice(index, 1);
    if (taken === undefined) return;
    next.splice(index + by, 0, taken);
    void save(list.name, next);
  }

  async function remove() {
    if (!confirm(`Delete the watchlist ${list.name}?`)) return;
    try {
      await deleteWatchlist(list.id);
      onChange(null);
    } catch (failure) {
      setError(failure);
    }
  }

  const quotes = new Map(list.quotes.map((q) => [q.symbol, q]));
  return (
    <section class="card" aria-label={`Watchlist ${list.name}`} data-testid="watchlist">
      <div class="row spread">
        {renaming ? (
          <form
            class="row"
            onSubmit={async (e) => {
              e.preventDefault();
              if (await save(name.trim(), list.symbols)) setRenaming(false);
            }}
          >
            <label class="sr-only" for={`rename-${list.id}`}>
              New name
            </label>
            <input id={`rename-${list.id}`} data-testid="watchlist-rename-input" value={name} maxLength={100} onInput={(e) => setName(e.currentTarget.value)} />
            <button type="submit" data-testid="watchlist-rename-save">
              Save
            </button>
          </form>
        ) : (
          <h2 data-testid="watchlist-name">{list.name}</h2>
        )}
        <div class="row">
          {!renaming && (
            <button type="button" class="link" data-testid="watchlist-rename" onClick={() => setRenaming(true)}>
              Rename
            </button>
          )}
          <button type="button" class="link" data-testid="watchlist-delete" onClick={() => void remove()}>
            Delete
          </button>
        </div>
      </div>
      <ErrorBanner error={error} testid="watchlist-card-error" />
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Symbol</th>
              <th scope="col">Price</th>
              <th scope="col">Day change</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {list.symbols.map((symbol, index) => (
              <SymbolRow
                key={symbol}
                symbol={symbol}
                first={quotes.get(symbol)}
                onUp={index > 0 ? () => move(index, -1) : undefined}
                onDown={index < list.symbols.length - 1 ? () => move(index, 1) : undefined}
                onRemove={() => void save(list.name, list.symbols.filter((s) => s !== symbol))}
              />
            ))}
          </tbody>
        </table>
      </div>
      <form
        class="row"
        onSubmit={async (e) => {
          e.preventDefault();
          const more = symbolsOf(adding).filter((s) => !list.symbols.includes(s));
          if (more.length && (await save(list.name, [...list.symbols, ...more]))) setAdding("");
        }}
      >
        <label class="sr-only" for={`add-${list.id}`}>
          Add symbols to {list.name}
        </label>
        <input id={`add-${list.id}`} data-testid="watchlist-add-input" placeholder="Add symbol" value={adding} onInput={(e) => setAdding(e.currentTarget.value)} />
        <button type="submit" data-testid="watchlist-add">
          Add
        </button>
      </form>
    </section>
  );
}

function SymbolRow(props: {
  symbol: string;
  first: WatchQuote | undefined;
  onUp: (() => void) | undefined;
  onDown: (() => void) | undefined;
  onRemove: () => void;
}) {
  const { symbol, first } = props;
  const live = usePrice(symbol);
  const quote = live ?? first;
  return (
    <tr data-testid="watchlist-row" data-symbol={symbol}>
      <th scope="row">
        <a href={`/stocks/${encodeURIComponent(symbol)}`}>{symbol}</a>
      </th>
      <td data-testid="watchlist-price">{price(quote?.price)}</td>
      <td class={trend(quote?.change)} data-testid="watchlist-change">
        {change(quote?.change)} ({percent(quote?.changePercent)})
      </td>
      <td class="row">
        <button type="button" class="link" aria-label={`Move ${symbol} up`} disabled={!props.onUp} onClick={props.onUp}>
          ↑
        </button>
        <button type="button" class="link" aria-label={`Move ${symbol} down`} disabled={!props.onDown} onClick={props.onDown}>
          ↓
        </button>
        <button type="button" class="link" aria-label={`Remove ${symbol}`} onClick={props.onRemove}>
          Remove
        </button>
      </td>
    </tr>
  );
}


