"""Everything the app knows about channels_redis's internal layout, in one place.

A send on Redis is cheapest when the event-log script also delivers the event
to the channel layer itself (one round trip, one atomic step): a ``PUBLISH``
on ``RedisPubSubChannelLayer``, what ``group_send`` does on
``RedisChannelLayer``. That needs knowledge the layers do not publish: their
message serialisation (msgpack, a random prefix on the core layer), the
pub/sub channel of a group, the core layer's group and channel keys. It also
powers :func:`~.batches.group_send_in_order` (pipelined publishing for
background senders) and :func:`~.joins.group_add_many` (one ``SUBSCRIBE`` for
the groups a hub joins in one loop turn).

So this knowledge is used only when three things hold:

* the installed channels_redis is a version the test suite has run against
  (:data:`~.versions.TESTED_VERSIONS`; ``setup.cfg`` declares the same range);
* the layer's configuration is one this module understands (msgpack, no
  encryption, no per-channel capacities; one host, or several on the pub/sub
  layer when :mod:`.shards` reproduces the layer's choice of host for a group,
  so the event store keeps each execution's log on the host its group's
  subscribers listen to; the core layer's channels live on hosts of their own,
  which a script on the log's host cannot reach);
* a probe (:func:`~.fused.probe`, once per host) delivered an event through the fused
  script and the layer's own public ``receive()`` returned exactly the message
  ``group_send`` would have sent.

Otherwise callers use the layer's public API. :mod:`django_sse_exec.sending.delivery`
makes that choice once per configuration and process.
"""
