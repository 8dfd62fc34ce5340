"""What a run leaves behind, read back: leaderboards, the HTML report and the CI gate never call a model."""
