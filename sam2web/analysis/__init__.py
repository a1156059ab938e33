"""Layer 2, analysis: measurements of stored masks and everything computed from them
(calibration, summaries, identity fixes, zones, pairs, heatmaps)."""
