import sys

from easrec.cli import main

sys.exit(main())
