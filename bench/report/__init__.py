"""Reports from the store: leaderboard tables and figures."""

# The leakage metric the figures plot unless told otherwise (here so that the CLI names it without importing pandas).
DEFAULT_FIGURE_METRIC = "ssim"
