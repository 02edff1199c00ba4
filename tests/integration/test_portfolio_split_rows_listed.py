"""An import answers the splits of its `split` rows beside its trades (real server, SQLite and
PostgreSQL): a dry run lists those that would be recorded, without ids, and what each would do
to the holding; the import lists those it recorded, as ListSplits then shows them."""

from __future__ import annotations

from datetime import date

from tests.integration.portfolio_harness import PortfolioService, import_csv, split, splits_of
from tests.integration.split_rows import HEADER, split_summary
from tests.utc_days import noon

# A 1-for-3 of 100 GE keeps 33.33333333 shares and pays the 0.0000000033... below 8 places in
# cash, at 3,000,000 a share: 0.01. A 10-for-1 of 10 NVDA, with no price, pays nothing. The rows
# are not in date order: the splits are listed oldest first, as ListSplits lists them.
TEXT = (
    HEADER
    + "2024-06-03T12:00:00Z,buy,NVDA,10,500,,\n"
    + "2024-06-10,split,NVDA,10:1,,,\n"
    + "2024-01-02T12:00:00Z,buy,GE,100,10,,\n"
    + "2024-02-01,split,GE,1:3,3000000,,\n"
    + "2024-03-01T12:00:00Z,sell,GE,30,32,,\n"
)
LISTED = [
    ("GE", "2024-02-01", "1:3", "3000000.00", "100", "33.33333333", "0.01"),
    ("NVDA", "2024-06-10", "10:1", "", "10", "100", "0.00"),
]


async def test_a_dry_run_lists_the_splits_it_would_record_and_what_each_would_do(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    # One recorded already: the rows are replayed after it (the 2-for-1 makes the 50 GE 100).
    await s.trade(who, p.id, "buy", "50", "20", symbol="GE", executed_at=noon(date(2023, 12, 1)))
    recorded = await split(s, who, p.id, "GE", "2023-12-15", 2, 1)

    reply = await import_csv(s, who, p.id, TEXT, dry_run=True)
    assert reply.imported == 0
    assert [(t.symbol, t.quantity) for t in reply.trades] == [
        ("NVDA", "10"),
        ("GE", "100"),
        ("GE", "30"),
    ]
    assert split_summary(list(reply.splits)) == [
        ("GE", "2024-02-01", "1:3", "3000000.00", "200", "66.66666666", "0.02"),
        ("NVDA", "2024-06-10", "10:1", "", "10", "100", "0.00"),
    ]
    assert [(x.id, x.portfolio_id) for x in reply.splits] == [("", p.id), ("", p.id)]
    assert [x.id for x in await splits_of(s, who, p.id)] == [recorded.id]  # none recorded


async def test_an_import_lists_the_splits_it_recorded_as_list_splits_shows_them(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    checked = await import_csv(s, who, p.id, TEXT, dry_run=True)
    assert split_summary(list(checked.splits)) == LISTED

    reply = await import_csv(s, who, p.id, TEXT)
    assert reply.imported == 3
    assert split_summary(list(reply.splits)) == LISTED
    listed = await splits_of(s, who, p.id)
    assert [(x.id, x.portfolio_id, x.created_at) for x in reply.splits] == [
        (x.id, p.id, x.created_at) for x in listed
    ]
    assert all(x.id for x in reply.splits)
    assert split_summary(listed) == LISTED

    # A file without split rows lists none.
    more = await import_csv(s, who, p.id, HEADER + "2024-07-01T12:00:00Z,buy,KO,1,60,,\n")
    assert (more.imported, list(more.splits)) == (1, [])
