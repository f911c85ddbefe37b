"""Where replicas run, behind one interface (``base.Target``): ``local`` processes on this machine
(processes.py), a Ray cluster, Kubernetes; ``select.Targets`` holds a control plane's by kind.

Imports nothing itself, so that importing one module of it (the backoff, a probe) loads only that one."""
