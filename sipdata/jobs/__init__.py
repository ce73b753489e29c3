"""Background work: the warmer, the report drainer, channel write-back and the sweeper."""
