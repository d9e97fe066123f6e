"""Hand-written expectations (oracles) that do not come from the code they check."""
