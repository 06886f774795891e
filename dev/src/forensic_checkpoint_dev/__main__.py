import sys

from forensic_checkpoint_dev.cli import main

sys.exit(main())
