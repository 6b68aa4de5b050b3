"""Streams of many executions on one connection: a fixed set, or a feed."""
