"""``python -m forensic_checkpoint.cli.kubectl_forensic``: the plugin without its console script."""

import sys

from forensic_checkpoint.cli.kubectl_forensic import main

sys.exit(main())
