"""Reports from the store: leaderboard tables and figures."""
