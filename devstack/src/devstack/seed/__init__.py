"""`make seed`: demo books (books.seed), or a lending scenario (`SCENARIO=minimal|high_scale`)."""

from devstack.seed.loader import LoadResult, seed_lending
from devstack.seed.scenarios import SCENARIOS, Scenario

__all__ = ["SCENARIOS", "LoadResult", "Scenario", "seed_lending"]
