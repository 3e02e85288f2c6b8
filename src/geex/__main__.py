import sys

from geex.cli import main

sys.exit(main())
