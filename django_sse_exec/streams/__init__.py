"""The streams: connect rules, one execution's stream, and streams of many."""
