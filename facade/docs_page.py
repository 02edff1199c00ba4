"""GET /docs: a self-contained page listing every route of the OpenAPI document."""

from __future__ import annotations

import html

from facade.openapi_static import OPENAPI_PATH, Schema

DOCS_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


def docs_page(spec: Schema) -> str:
    """A self-contained page (no CDN: the machines may be offline) listing every route."""
    rows = []
    for path, operations in spec["paths"].items():
        for verb, op in operations.items():
            lock = "bearer" if op.get("security") else "public"
            rows.append(
                f"<tr><td class=v>{html.escape(verb.upper())}</td>"
                f"<td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(op.get('summary', ''))}</td>"
                f"<td>{html.escape(', '.join(op.get('tags', [])))}</td>"
                f"<td>{lock}</td></tr>"
            )
    title = html.escape(spec["info"]["title"])
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{title}</title><style>"
        "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;"
        "text-align:left}td.v{font-weight:600;font-family:monospace}"
        "</style></head><body>"
        f"<h1>{title}</h1><p>The interactive reference: <a href=/docs>/docs</a> (the web "
        "app's API explorer). The machine-readable document: "
        f'<a href="{OPENAPI_PATH}">{OPENAPI_PATH}</a> (OpenAPI 3.1).</p>'
        "<table><tr><th>Method</th><th>Path</th><th>Summary</th><th>Service</th><th>Auth</th>"
        f"</tr>{''.join(rows)}</table></body></html>"
    )
