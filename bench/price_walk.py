"""The market the in-process index parts of the bench (orders, alerts) step through: every
symbol moves each step, a one-minute step of a 25%-volatility walk, in whole cents."""

from __future__ import annotations

import math
import random
from decimal import Decimal

STEP_SIGMA = 0.25 * math.sqrt(1 / (252 * 390))  # one trading minute at 25% a year


class PriceWalk:
    """`symbols` prices (S00, S01, ...) drawn from 20 to 500, then walked by `step()`; one
    random source for the prices and whatever else the part draws, so a seed replays it all."""

    def __init__(self, symbols: int, rng: random.Random) -> None:
        self.rng = rng
        self.prices = {f"S{n:02d}": Decimal(rng.randint(2000, 50000)) / 100 for n in range(symbols)}
        self._logs = {s: math.log(float(p)) for s, p in self.prices.items()}

    def step(self) -> dict[str, Decimal]:
        """Every symbol's next price (the walk runs on the logarithm, unrounded)."""
        for symbol in self.prices:
            self._logs[symbol] += STEP_SIGMA * self.rng.gauss()
            self.prices[symbol] = Decimal(str(round(math.exp(self._logs[symbol]), 2)))
        return self.prices
