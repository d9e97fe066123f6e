"""``housing-replay``: score a past range of the records topic with one pinned model version into another topic."""
