"""One channel-layer subscription per process, fanned out to every local stream."""
