"""The I/O shell around the decision core: ingest, tick and send, as Lambda runs them."""
