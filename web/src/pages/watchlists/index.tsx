/** Watchlists: the user's named lists of symbols, each with live prices and the day's change
 * (ticks from /ws/portfolio: the quotes the list came with until the first tick). Create, rename,
 * reorder (up/down), add and remove symbols, delete; every change replaces the whole list.
 *
 * A list's changes are saved one at a time, each made from the list the server answered last:
 * two made before the first is answered (two symbols added quickly on a slow network) both stay,
 * where the second, built from the list on screen, would have put back the list without the first. */

import { useRef, useState } from "preact/hooks";
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
import { Table } from "../../components/Table";
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
      lists.set((shown) => [...(shown ?? []), made]);
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
    lists.set((shown = []) => (list ? shown.map((w) => (w.id === id ? list : w)) : shown.filter((w) => w.id !== id)));
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
  // The list as the server last answered it, and the saves waiting their turn.
  const saved = useRef(list);
  const queue = useRef<Promise<unknown>>(Promise.resolve());

  /** Queues a change, made from the latest saved list when its turn comes (null: nothing to do).
   * Resolves to whether it was saved. */
  function save(change: (current: Watchlist) => { name: string; symbols: string[] } | null): Promise<boolean> {
    const turn = queue.current.then(async () => {
      const next = change(saved.current);
      if (next === null) return true;
      try {
        const answer = await updateWatchlist(list.id, next.name, next.symbols);
        saved.current = answer;
        onChange(answer);
        setError(null);
        return true;
      } catch (failure) {
        setError(failure);
        return false;
      }
    });
    queue.current = turn;
    return turn;
  }

  function move(symbol: string, by: number) {
    void save((current) => {
      const next = [...current.symbols];
      const index = next.indexOf(symbol);
      if (index < 0 || index + by < 0 || index + by >= next.length) return null;
      next.splice(index, 1);
      next.splice(index + by, 0, symbol);
      return { name: current.name, symbols: next };
    });
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
              const renamed = name.trim();
              if (await save((current) => ({ name: renamed, symbols: current.symbols }))) setRenaming(false);
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
      <Table
        columns={[
          "Symbol",
          "Price",
          "Day change",
          { label: <span class="sr-only">Actions</span> },
        ]}
      >
        {list.symbols.map((symbol, index) => (
          <SymbolRow
            key={symbol}
            symbol={symbol}
            first={quotes.get(symbol)}
            onUp={index > 0 ? () => move(symbol, -1) : undefined}
            onDown={index < list.symbols.length - 1 ? () => move(symbol, 1) : undefined}
            onRemove={() =>
              void save((current) =>
                current.symbols.includes(symbol)
                  ? { name: current.name, symbols: current.symbols.filter((s) => s !== symbol) }
                  : null,
              )
            }
          />
        ))}
      </Table>
      <form
        class="row"
        onSubmit={async (e) => {
          e.preventDefault();
          const asked = symbolsOf(adding);
          if (asked.length === 0) return;
          // Cleared at once, so the next symbol can be typed while this one is saved.
          setAdding("");
          const done = await save((current) => {
            const more = asked.filter((s) => !current.symbols.includes(s));
            return more.length ? { name: current.name, symbols: [...current.symbols, ...more] } : null;
          });
          if (!done) setAdding((typed) => typed || asked.join(" "));
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


