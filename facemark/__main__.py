import sys

from facemark.cli import main

sys.exit(main())
