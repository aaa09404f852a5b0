"""Scripts/bench's code: testbed.py (servers, tunnel, ssh -L, process helpers), rows.py (the
measurements), report.py (targets, table, JSON). echo_server.py, fanout_client.py and
crypto_ceiling.c are programs the bench runs."""
