"""Qt-free read models of the review window: queries, browser rows, overlays, window state."""
