"""Layer 1, tracking: the model registry and checkpoints, lazy frames for SAM 2, the mask
store, SAM 2's per-video state, the tracking session and its replay, and the scheduler
that shares one model between users."""
