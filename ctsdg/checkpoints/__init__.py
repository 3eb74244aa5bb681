"""Reading, writing and converting CTSDG checkpoints in the formats the project supports."""
