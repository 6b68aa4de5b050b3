"""Run the ``daphne`` command on uvloop: ``python -m bench.daphne_uvloop <daphne arguments>``.

daphne makes its event loop with ``asyncio.new_event_loop()`` when
``daphne.server`` is imported (before it reads its arguments) and hands it to
Twisted's asyncio reactor. So the only way to give it uvloop is to set uvloop's
event-loop policy before that import, which is all this does; the rest is the
``daphne`` command itself. Twisted's reactor uses the loop through
``add_reader``/``add_writer``/``call_at``, which uvloop provides.
"""

import asyncio
import sys
import warnings

import uvloop

if __name__ == "__main__":
    if "daphne.server" in sys.modules:
        raise RuntimeError("daphne.server was imported before the uvloop policy was set")
    with warnings.catch_warnings():  # the policy API is deprecated from Python 3.12 on, still works
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from daphne.cli import CommandLineInterface

    CommandLineInterface.entrypoint()
