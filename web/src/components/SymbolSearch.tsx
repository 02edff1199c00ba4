/** A symbol field with suggestions from GET /api/v1/stocks?q= (a combobox: arrows, Enter,
 * Escape). */

import { useEffect, useRef, useState } from "preact/hooks";
import { api, envelope, type Stock } from "../api/client";

export function SymbolSearch(props: {
  id: string;
  value: string;
  onChange: (symbol: string) => void;
  invalid?: boolean;
}) {
  const [text, setText] = useState(props.value);
  const [suggestions, setSuggestions] = useState<Stock[]>([]);
  const [open, setOpen] = useState(false);
  const [active, setActive] = useState(-1);
  const asked = useRef(0);
  useEffect(() => setText(props.value), [props.value]);

  useEffect(() => {
    const q = text.trim();
    if (!open || q.length === 0) {
      setSuggestions([]);
      return;
    }
    const ticket = ++asked.current;
    const timer = setTimeout(() => {
      envelope(api().GET("/api/v1/stocks", { params: { query: { q, limit: 8 } } }))
        .then((body) => {
          if (ticket === asked.current) {
            setSuggestions(body.data);
            setActive(-1);
          }
        })
        .catch(() => ticket === asked.current && setSuggestions([]));
    }, 150);
    return () => clearTimeout(timer);
  }, [text, open]);

  function choose(stock: Stock) {
    const symbol = (stock.symbol ?? "").toUpperCase();
    setText(symbol);
    setOpen(false);
    props.onChange(symbol);
  }

  function onKeyDown(event: KeyboardEvent) {
    if (event.key === "ArrowDown" && suggestions.length) {
      event.preventDefault();
      setOpen(true);
      setActive((a) => (a + 1) % suggestions.length);
    } else if (event.key === "ArrowUp" && suggestions.length) {
      event.preventDefault();
      setActive((a) => (a <= 0 ? suggestions.length - 1 : a - 1));
    } else if (event.key === "Enter" && open && active >= 0 && suggestions[active]) {
      event.preventDefault();
      choose(suggestions[active]);
    } else if (event.key === "Escape") {
      setOpen(false);
    }
  }

  const listId = `${props.id}-suggestions`;
  const showList = open && suggestions.length > 0;
  return (
    <div class="combo">
      <input
        id={props.id}
        role="combobox"
        aria-autocomplete="list"
        aria-expanded={showList}
        aria-controls={listId}
        aria-activedescendant={active >= 0 ? `${listId}-${active}` : undefined}
        aria-invalid={props.invalid}
        autoComplete="off"
        spellcheck={false}
        value={text}
        placeholder="AAPL, Microsoft…"
        onInput={(e) => {
          setText(e.currentTarget.value);
          setOpen(true);
        }}
        onChange={(e) => props.onChange(e.currentTarget.value.trim().toUpperCase())}
        onKeyDown={onKeyDown}
        onBlur={() => setTimeout(() => setOpen(false), 150)}
        data-testid="symbol-input"
      />
      {showList && (
        <ul role="listbox" id={listId} data-testid="symbol-suggestions">
          {suggestions.map((stock, i) => (
            <li
              key={stock.symbol}
              id={`${listId}-${i}`}
              role="option"
              aria-selected={i === active}
              onMouseDown={(e) => {
                e.preventDefault(); // keep focus in the field
                choose(stock);
              }}
              data-testid={`suggestion-${stock.symbol}`}
            >
              <strong>{stock.symbol}</strong> <span class="muted">{stock.name}</span>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
