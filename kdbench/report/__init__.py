"""Reading results: statistics, the leaderboard, its output formats, plots and the
published page."""
