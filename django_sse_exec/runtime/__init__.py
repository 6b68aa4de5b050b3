"""How the app's async code runs: from sync callers, batched per loop turn, on daphne."""
