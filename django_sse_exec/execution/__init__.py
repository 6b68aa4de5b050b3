"""One execution as data and as work: its vocabulary and state, the reporter, leases."""
