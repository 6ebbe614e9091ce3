"""The lending scenarios of `make seed SCENARIO=...`, after the anchor system's seeder."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    name: str
    books: int
    members: int
    # Every borrow row: lent ones (returned or still out) and the requests that became holds.
    borrows: int
    # Holds still waiting for a copy; a fifth as many again were cancelled earlier.
    waiting_holds: int
    days: int

    @property
    def cancelled_holds(self) -> int:
        return self.waiting_holds // 5

    @property
    def holds(self) -> int:
        return self.waiting_holds + self.cancelled_holds


SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Scenario("minimal", books=30, members=36, borrows=96, waiting_holds=10, days=60),
        Scenario(
            "high_scale",
            books=200_000,
            members=60_000,
            borrows=4_000_000,
            waiting_holds=4_000,
            days=3_652,
        ),
    )
}
