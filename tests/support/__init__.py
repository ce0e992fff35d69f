"""Helpers the tests share. None of them asks cypher_cell what it did.

- procfs: the kernel's accounts of a process's memory (/proc status, maps,
  smaps, mem), a memory scan for a secret's copies, where a cell lives.
- child: a Python child that reports as JSON and waits to be looked at.
- privileges: `preexec_fn`s for children without a capability or under a
  memory-lock limit.
- cli: the command line, as a subprocess or in this process.
- provider_contract: what every provider meets (a mixin for test classes),
  and the traceback-locals check for a load that fails after reading.
- secret_service: a real gnome-keyring-daemon on a private D-Bus (a fixture).
- envfile: writing `.env` files, the interpolation cases' environment, a
  FIFO writer, hypothesis' settings.
- dotenv_oracle: python-dotenv as the oracle of the `.env` parser.
"""
