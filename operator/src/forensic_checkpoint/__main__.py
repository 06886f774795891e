from forensic_checkpoint.cli.main import main
import sys

sys.exit(main())
