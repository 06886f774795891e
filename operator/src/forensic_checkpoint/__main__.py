import sys

from forensic_checkpoint.cli.main import main

sys.exit(main())
