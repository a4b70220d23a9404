"""Emulators of Salesforce and Copernica, faithful on the wire (demo, tests, benchmarks)."""
