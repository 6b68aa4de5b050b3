"""Side-by-side benchmark of SSE servers for Django: ``make bench`` runs :mod:`bench.run`."""
