"""The circulation section: what the rules engine costs on the data there is (run it on
`make seed SCENARIO=high_scale`: 4,000,000 loans). Orders' own code runs on the orders
database, each scenario in a transaction that is rolled back, so the data is left as it
was:

- the resolver: which policy applies to a member and an item type, 3,000 times;
- the lost-item job: the library sweep's batches that declare loans lost and charge
  them, with the default policy losing loans 30 days overdue;
- an emergency closing of the next seven days: its job's batches;
- a policy preview: doubling the default policy's fine, over every loan out.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from devstack.bench.load import Summary, summarize
from devstack.bench.report import Report
from devstack.bench.stack import Options, require_orders_database
from orders.lending.closed_days import CalendarService
from orders.lending.lost import LostItems
from orders.lending.models import ClosingStatus
from orders.lending.policies import PolicyService
from orders.lending.policy import PolicyResolver
from orders.lending.preview import PolicyPreviewer
from orders.lending.rule_schemas import ClosingCreate, PolicyWrite, PreviewRequest
from servicekit.api_keys import ApiKey, Role

RESOLUTIONS = 3_000
LOST_AFTER_DAYS = 30
BATCH = 500
# The lost-item and closing scenarios stop after this many batches (each is timed).
MAX_BATCHES = 40
# Recorded in the (rolled back) audit trail of the previewed change.
BENCH_KEY = ApiKey(id=0, prefix="bench", role=Role.ADMIN)


async def run_circulation(options: Options) -> Report:
    report = Report(
        "circulation",
        heading="Circulation rules, orders' own code on the orders database (rolled back)",
        rate="per s",
    )
    await require_orders_database(options.orders_database_url)
    url = options.orders_database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_async_engine(url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    rng = random.Random(options.random_seed)  # noqa: S311 - sampling, not secrets
    try:
        async with sessions() as session:
            loans = await session.scalar(text("SELECT count(*) FROM borrows"))
            out = await session.scalar(text("SELECT count(*) FROM borrows WHERE status = 'active'"))
            report.notes.append(f"  {loans:,} borrows, {out:,} loans out")
            report.summaries.append(await _resolutions(session, rng))
        async with sessions() as session, session.begin():
            report.summaries.append(await _lost_items(session, report))
            await session.rollback()
        async with sessions() as session, session.begin():
            report.summaries.append(await _closing(session, report))
            await session.rollback()
        async with sessions() as session, session.begin():
            report.summaries.append(await _preview(session, report))
            await session.rollback()
    finally:
        await engine.dispose()
    return report


async def _resolutions(session: AsyncSession, rng: random.Random) -> Summary:
    members = (await session.scalars(text("SELECT id FROM members LIMIT 5000"))).all()
    item_types = ["book", "reference", "audiobook", "magazine"]
    resolver = PolicyResolver(session)
    timings: list[float] = []
    started = time.perf_counter()
    for _ in range(RESOLUTIONS):
        member_id, item_type = rng.choice(members), rng.choice(item_types)
        begun = time.perf_counter()
        await resolver.for_member(member_id=member_id, item_type=item_type)
        timings.append((time.perf_counter() - begun) * 1000)
    return summarize(
        "resolve a member's policy", timings, errors=0, seconds=time.perf_counter() - started
    )


async def _lost_items(session: AsyncSession, report: Report) -> Summary:
    await session.execute(
        text(
            "UPDATE lending_policies SET lost_after_days = :days, lost_processing_fee = 5"
            " WHERE member_category IS NULL AND item_type IS NULL"
        ),
        {"days": LOST_AFTER_DAYS},
    )
    due = await session.scalar(
        text(
            "SELECT count(*) FROM borrows WHERE status = 'active'"
            " AND due_at < now() - make_interval(days => :days)"
        ),
        {"days": LOST_AFTER_DAYS},
    )
    lost_items = LostItems(session)
    timings: list[float] = []
    lost = 0
    started = time.perf_counter()
    for _ in range(MAX_BATCHES):
        begun = time.perf_counter()
        batch = await lost_items.declare(limit=BATCH)
        timings.append((time.perf_counter() - begun) * 1000)
        lost += batch
        if batch < BATCH:
            break
    seconds = time.perf_counter() - started
    report.notes.append(
        f"  lost-item job: {due:,} loans overdue more than {LOST_AFTER_DAYS} days; "
        f"{lost:,} declared lost and charged in {len(timings)} batch(es) of up to {BATCH} "
        f"({lost / seconds:,.0f} loans/s)"
    )
    return summarize(f"lost-item batch ({BATCH})", timings, errors=0, seconds=seconds)


async def _closing(session: AsyncSession, report: Report) -> Summary:
    today = datetime.now(UTC).date()
    calendar = CalendarService(session)
    closing = await calendar.close_at_short_notice(
        data=ClosingCreate(first_day=today, last_day=today + timedelta(days=6), reason="bench")
    )
    timings: list[float] = []
    started = time.perf_counter()
    for _ in range(MAX_BATCHES):
        begun = time.perf_counter()
        closing = await calendar.move_batch(closing_id=closing.id)
        timings.append((time.perf_counter() - begun) * 1000)
        if closing.status is ClosingStatus.DONE:
            break
    report.notes.append(
        f"  closing of 7 days: {closing.loans_moved:,} loans and {closing.holds_moved:,} holds "
        f"moved in {len(timings)} batch(es)"
    )
    return summarize("closing batch", timings, errors=0, seconds=time.perf_counter() - started)


async def _preview(session: AsyncSession, report: Report) -> Summary:
    policies = PolicyService(session)
    default = await session.scalar(
        text("SELECT id FROM lending_policies WHERE member_category IS NULL AND item_type IS NULL")
    )
    current = await policies.get(policy_id=int(default))
    proposed = PolicyWrite(
        loan_period_days=current.loan_period_days,
        max_renewals=current.max_renewals,
        fine_per_day=f"{current.fine_per_day * 2:.2f}",
        fine_cap="book_price" if current.fine_cap is None else f"{current.fine_cap:.2f}",
        hold_pickup_days=current.hold_pickup_days,
    )
    began = time.perf_counter()
    preview = await PolicyPreviewer(session, policies=policies).preview(
        data=PreviewRequest(policy_id=current.id, policy=proposed), by=BENCH_KEY
    )
    elapsed = time.perf_counter() - began
    report.notes.append(
        f"  preview of a doubled fine: {preview.loans_out:,} loans out and "
        f"{preview.holds_open:,} holds looked at, {preview.loans_affected:,} loans affected"
    )
    return summarize("policy preview", [elapsed * 1000], errors=0, seconds=elapsed)
