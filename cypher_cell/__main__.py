"""`python -m cypher_cell` runs the `cypher-cell` command line."""

import sys

from cypher_cell.cli import main

sys.exit(main())
