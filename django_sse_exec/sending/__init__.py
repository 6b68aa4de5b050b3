"""How an event leaves this process: logged, then delivered to the channel layer."""
