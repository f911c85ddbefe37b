"""Open Inference Protocol (V2): datatypes, the one codec (numpy ⇄ JSON / binary), request/response types."""
