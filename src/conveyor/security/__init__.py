"""Security: tokens and roles, the audit log's hash chain, artifact signing and encryption, TLS.

Pure building blocks; the registry stores what they make and the servers enforce what they decide.
"""
